"""The locust user of the serving experiments (run by ``experiments.serving.run_locust``, never imported by them:
locust patches the process with gevent, so it runs in a process of its own).

Configuration: the JSON in the environment variable ``SERVING_LOAD`` (``experiments.serving.LoadSpec``):
the prompts (token id lists), ``max_tokens``, ``max_requests`` (a hard bound on requests issued),
``retries`` and ``retry_backoff_s`` (a failed attempt, 5xx or a broken connection, is retried; a 4xx is
not: it is the client's error), ``timeout_s`` per attempt, optional load ``stages``
(``[[seconds, users], ...]``: a step load; otherwise locust's ``-u`` users run for ``--run-time``) and
``out``, the JSON file written when the test stops.

Each user runs a closed loop (no think time): send a request, wait for its answer, send the next.
Every request issued is recorded with its outcome (``ok``, ``rejected``: a 4xx, ``failed``: retries
exhausted, ``unfinished``: still in flight when locust stopped), its attempts and their statuses, the
client-side latency and the server's timings, so no request is lost silently.
"""

from __future__ import annotations

import itertools
import json
import os
import time

import gevent
from locust import HttpUser, LoadTestShape, constant, events, task
from locust.exception import StopUser

SPEC = json.loads(os.environ.get("SERVING_LOAD", "{}"))
_ids = itertools.count()
RECORDS: dict[int, dict] = {}     # request id -> its record (written when the test stops)
STAGES: list[tuple[int, float]] = []  # (users, unix time the stage began)


class CompletionsUser(HttpUser):
    """A client of ``POST /v1/completions`` with bounded retries."""

    wait_time = constant(0)

    @task
    def complete(self) -> None:
        rid = next(_ids)
        if rid >= SPEC.get("max_requests", 0):
            if all(r["outcome"] != "unfinished" for r in RECORDS.values()):
                gevent.spawn(self.environment.runner.quit)  # the last request is answered: end the test now
            raise StopUser()
        prompts = SPEC["prompts"]
        record = {"id": rid, "prompt": rid % len(prompts), "sent": time.time(), "attempts": 0, "statuses": [],
                  "outcome": "unfinished"}
        RECORDS[rid] = record
        body = {"prompt": prompts[rid % len(prompts)], "max_tokens": SPEC["max_tokens"]}
        for attempt in range(1 + SPEC.get("retries", 0)):
            if attempt:
                time.sleep(SPEC.get("retry_backoff_s", 0.5) * attempt)
            record["attempts"] += 1
            start = time.time()
            with self.client.post("/v1/completions", json=body, timeout=SPEC.get("timeout_s", 120),
                                  catch_response=True, name="/v1/completions") as resp:
                status = resp.status_code
                record["statuses"].append(status)
                if status == 200:
                    data = resp.json()
                    record.update(outcome="ok", latency_s=time.time() - start, done=time.time(),
                                  tokens=data["tokens"], ttft_s=data["timing"]["ttft_s"],
                                  server_total_s=data["timing"]["total_s"], started=data["timing"]["started"],
                                  batch_size=data["timing"]["batch_size"], pid=data["replica"]["pid"])
                    resp.success()
                    return
                if 400 <= status < 500:
                    record.update(outcome="rejected", done=time.time(), error=resp.text[:300])
                    resp.failure(f"rejected {status}")
                    return
                record["error"] = (resp.text or str(resp.error))[:300]
                resp.failure(f"attempt {attempt + 1}: status {status}")
        record.update(outcome="failed", done=time.time())


if SPEC.get("stages"):
    class StepLoad(LoadTestShape):
        """``stages``: hold each user count for its seconds, all users spawned at once; stop after the last."""

        def tick(self):  # noqa: ANN201 (locust's protocol: (users, spawn rate) or None)
            elapsed = self.get_run_time()
            for seconds, users in SPEC["stages"]:
                if elapsed < seconds:
                    if not STAGES or STAGES[-1][0] != users:
                        STAGES.append((users, time.time()))
                    return users, max(users, 1)
                elapsed -= seconds
            return None


@events.test_stop.add_listener
def _write(**_kwargs) -> None:
    with open(SPEC["out"], "w") as f:
        json.dump({"records": list(RECORDS.values()), "stages": STAGES, "issued": len(RECORDS)}, f)
