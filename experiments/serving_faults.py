"""P6.availability by proxy: kill -9 a replica's process during a locust load; count every request's outcome.

What runs
---------
Two replicas of the bench export behind Ray Serve on 127.0.0.1 (``serving.cluster``), reference
answers for a seeded prompt pool, then a locust load (``experiments.serving.run_locust``: ``users``
closed-loop clients, each failed attempt retried up to ``retries`` times with a growing back-off; a 4xx
is never retried). ``kill_at_s`` seconds into the load, one replica's worker process (its pid, from
``/v1/info``, checked to be a process this experiment's Ray started) gets SIGKILL. Ray Serve notices
the dead actor, routes to the survivor and starts a replacement; the experiment watches the replica
states until two replicas run again (or the load ends).

What is measured
----------------
- ``availability``: requests answered with exactly their reference tokens / requests issued. Every
  request issued is counted: answered right, answered wrong, refused, failed after its retries or
  still unfinished when the load stopped (``experiments.serving.summarize``).
- context: requests that needed a retry, failed attempts, seconds until the replacement replica ran,
  and whether the replacement served requests before the load ended.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from typing import Any

from experiments.serving import Background, LoadSpec, reference_answers, replica_pids, seeded_prompts, summarize


def fault_experiment(model_dir: str, *, users: int = 8, prompt_len: int = 64, max_tokens: int = 32,
                     duration_s: float = 90.0, kill_at_s: float = 20.0, retries: int = 3, n_prompts: int = 8,
                     seed: int = 0, max_requests: int = 5000) -> dict[str, Any]:
    """Run the experiment of the module docstring; returns ``summarize``'s numbers plus the fault's."""
    import psutil

    from serving.cluster import descendants, free_port, local_server, replica_counts, wait_ready

    with tempfile.TemporaryDirectory(prefix="serving-faults-") as tmp, \
            local_server(model_dir, port=free_port(), replicas=2) as server:
        meta = wait_ready(server.url, 60)["export"]
        pids = replica_pids(server.url, 2)
        prompts = seeded_prompts(n_prompts, prompt_len, meta["vocab_size"], seed)
        references = reference_answers(server.url, prompts, max_tokens)
        spec = LoadSpec(prompts, max_tokens, users=users, duration_s=duration_s, max_requests=max_requests,
                        retries=retries, retry_backoff_s=1.0)
        load = Background(server.url, spec, tmp)
        victim = min(pids)
        while load.running() and time.time() < load.started + kill_at_s:
            time.sleep(0.2)
        if victim not in descendants() or "ServeReplica" not in " ".join(psutil.Process(victim).cmdline()):
            raise RuntimeError(f"pid {victim} is not a replica this experiment started; refusing to kill it")
        killed_at = time.time()
        os.kill(victim, signal.SIGKILL)
        replaced_s, down_seen, timeline = float("nan"), False, []
        while load.running():
            timeline.append((round(time.time() - killed_at, 1), replica_counts()))
            running = timeline[-1][1].get("RUNNING", 0)
            down_seen = down_seen or running < 2
            if down_seen and running >= 2 and replaced_s != replaced_s:
                replaced_s = time.time() - killed_at
            time.sleep(0.5)
        data = load.result()
    records = data["records"]
    numbers = summarize(records, references)
    after = [r for r in records if r.get("done", killed_at) >= killed_at]
    numbers.update(
        users=users, prompt_len=prompt_len, max_tokens=max_tokens, duration_s=duration_s, kill_at_s=kill_at_s,
        retries=retries, killed_pid=victim, replaced_s=replaced_s,
        failed_attempts=sum(sum(1 for s in r["statuses"] if s != 200) for r in records),
        requests_after_kill=len(after),
        replacement_served=int(any(r.get("pid") not in pids for r in records if r["outcome"] == "ok")),
        timeline=timeline[::4], locust_returncode=data["returncode"])
    return numbers
