"""P6.autoscale_time by proxy: step the load up, time until a new replica serves; step it down, see replicas retire.

What runs
---------
The bench export behind Ray Serve on 127.0.0.1 with Ray Serve's autoscaler (``AUTOSCALING``: 1 to 2
replicas, a target of ``max_batch_size / 2`` requests in flight per replica, so one full batch in
flight and one queued asks for a second replica). A locust step load (``LoadSpec.stages``):
``low_users`` clients for ``low_s`` seconds (one replica suffices), then ``high_users`` for ``high_s``,
then none for ``down_s``. Meanwhile the experiment polls the deployment's replica states every half
second; after the load it keeps polling until one replica is left (at most ``retire_wait_s``).

The autoscaler's settings are the deployment's, stated here: metrics every 2 s averaged over 10 s,
10 s of sustained demand before scaling up, 30 s before scaling down (Ray Serve's defaults are 10 s,
30 s, 30 s and 600 s; the 600 s scale-down delay would make the step down take 10 minutes to show).

What is measured
----------------
- ``autoscale_s``: from the step up (the moment locust switched to ``high_users``) to the first
  request a new replica (a pid not serving before the step) started computing, from the server's own
  timings. If no new replica served within ``high_s``, the value is ``high_s`` (a lower bound) and
  ``scaled_up`` is 0.
- context: ``decision_s`` (step to the autoscaler starting a replica), ``ready_s`` (step to two
  replicas running), ``max_running``;
- ``retired``: 1 when, after the step down, the deployment went back to one running replica within
  ``down_s + retire_wait_s``; ``retire_s``: seconds from the step down until it did.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

from experiments.serving import Background, LoadSpec, reference_answers, seeded_prompts, summarize

AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "metrics_interval_s": 2.0, "look_back_period_s": 10.0,
               "upscale_delay_s": 10.0, "downscale_delay_s": 30.0}


def _one_replica(states: dict[str, int]) -> bool:
    """True when exactly one replica exists and it is running (none starting or stopping)."""
    return states.get("RUNNING", 0) == 1 and sum(states.values()) == 1


def _first_time(timeline: list[tuple[float, dict[str, int]]], after: float, predicate) -> float:  # noqa: ANN001
    """First poll time >= ``after`` whose replica states satisfy ``predicate`` (NaN if none)."""
    return next((t for t, states in timeline if t >= after and predicate(states)), math.nan)


def autoscale_experiment(model_dir: str, *, low_users: int = 1, high_users: int = 8, low_s: float = 30.0,
                         high_s: float = 150.0, down_s: float = 60.0, retire_wait_s: float = 60.0,
                         prompt_len: int = 64, max_tokens: int = 32, n_prompts: int = 8, seed: int = 0,
                         max_batch_size: int = 8, max_requests: int = 100_000) -> dict[str, Any]:
    """Run the experiment of the module docstring; returns its numbers and the replica timeline."""
    from serving.cluster import free_port, local_server, replica_counts, wait_ready

    config = {**AUTOSCALING, "target_ongoing_requests": max(1, max_batch_size // 2)}
    timeline: list[tuple[float, dict[str, int]]] = []
    with tempfile.TemporaryDirectory(prefix="serving-autoscale-") as tmp, \
            local_server(model_dir, port=free_port(), autoscaling=config, max_batch_size=max_batch_size) as server:
        info = wait_ready(server.url, 60)
        first_pid = info["replica"]["pid"]
        prompts = seeded_prompts(n_prompts, prompt_len, info["export"]["vocab_size"], seed)
        references = reference_answers(server.url, prompts, max_tokens)
        # The request bound must not end the step load early (a fast model, e.g. tiny, issues ~100 requests/s).
        spec = LoadSpec(prompts, max_tokens, users=high_users, retries=2, retry_backoff_s=1.0, max_requests=max_requests,
                        stages=[(low_s, low_users), (high_s, high_users), (down_s, 0)])
        load = Background(server.url, spec, tmp)
        while load.running():
            timeline.append((time.time(), replica_counts()))
            time.sleep(0.5)
        data = load.result()
        deadline = time.time() + retire_wait_s
        while time.time() < deadline:
            timeline.append((time.time(), replica_counts()))
            if _one_replica(timeline[-1][1]):
                break
            time.sleep(0.5)
    stages = {users: at for users, at in data["stages"]}
    records = data["records"]
    if 0 not in stages and data.get("issued", 0) >= max_requests:
        raise RuntimeError(f"the load hit its bound of {max_requests} requests before its step down: raise "
                           "max_requests so the stages run their full length")
    if high_users not in stages:
        raise RuntimeError(f"the load never stepped up to {high_users} users (locust recorded stages "
                           f"{data['stages']}, exit status {data['returncode']}); no autoscaling to measure")
    step_up = stages[high_users]
    # Locust can stop before its shape's last tick under heavy host load: then the load ended when its last
    # request did, and the step down is dated there.
    step_down = stages.get(0, max((r.get("done") or r.get("sent", 0.0) for r in records), default=time.time()))
    new = [r["started"] for r in records if r["outcome"] == "ok" and r["pid"] != first_pid and r["started"] >= step_up]
    scaled_up = bool(new) and min(new) - step_up <= high_s
    retired_at = _first_time(timeline, step_down, _one_replica)
    numbers = summarize(records, references)
    numbers.update(
        autoscale_s=min(new) - step_up if scaled_up else high_s, scaled_up=int(scaled_up),
        decision_s=_first_time(timeline, step_up, lambda s: sum(s.values()) >= 2) - step_up,
        ready_s=_first_time(timeline, step_up, lambda s: s.get("RUNNING", 0) >= 2) - step_up,
        max_running=max((s.get("RUNNING", 0) for _, s in timeline), default=0),
        retired=int(not math.isnan(retired_at)), retire_s=retired_at - step_down,
        low_users=low_users, high_users=high_users, stages=[[s, u] for s, u in spec.stages],
        autoscaling=config, timeline=[[round(t - step_up, 1), s] for t, s in timeline][::4],
        locust_returncode=data["returncode"], step_down_recorded=int(0 in stages))
    return numbers
