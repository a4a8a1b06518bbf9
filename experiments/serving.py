"""P6 by proxy: the Ray Serve completions server under a locust load on 127.0.0.1 (latency, TTFT, tokens/s).

What runs
---------
``load_experiment`` exports ``ModelConfig.bench()`` (seeded weights) with ``tf_impl.export``, starts a
private loopback Ray cluster with the completions app (``serving.cluster``), asks it once for every
prompt of a seeded pool (the reference answers, which also warm the path), then drives it with
locust in headless mode (``experiments/serving_locustfile.py`` in a process of its own): ``users``
closed-loop clients, each prompt ``prompt_len`` random token ids, each answer ``max_tokens`` greedy
tokens. The run is bounded in time (``duration_s``, then up to ``stop_timeout_s`` for the requests in
flight) and in count (``max_requests``); the locust process itself has a hard timeout.

What is measured
----------------
From the per-request records (every request issued has one; ``summarize``):
- latency: client-side seconds from sending the request to its answer, P50/P95/P99 over the
  requests answered;
- TTFT: the server's time to first token, from the request's arrival at the replica to its first new
  token (answers are not streamed, so the client sees the whole answer at once);
- tokens/s: completion tokens answered / seconds from the first request sent to the last answer;
  per GPU: divided by the GPUs the replicas hold, or by 1 on a host without GPUs (the whole CPU host
  counts as one device, which is why it is a PROXY there);
- correct: answered with exactly the reference tokens for its prompt (greedy decoding is deterministic).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

LOCUSTFILE = Path(__file__).with_name("serving_locustfile.py")


@dataclass(frozen=True)
class LoadSpec:
    """One bounded locust run: who sends what, how often it retries, and its bounds."""

    prompts: list[list[int]]
    max_tokens: int
    users: int = 8
    duration_s: float = 30.0
    max_requests: int = 2000
    retries: int = 0
    retry_backoff_s: float = 0.5
    timeout_s: float = 120.0
    stop_timeout_s: float = 60.0
    stages: list[tuple[float, int]] = field(default_factory=list)  # [(seconds, users)]: a step load instead


def check_loopback(url: str) -> None:
    """Refuse any target that is not this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"load target {url} is not a loopback address; the load generator only targets "
                         "127.0.0.1 (or ::1, localhost)")


def seeded_prompts(n: int, length: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    """``n`` prompts of ``length`` uniform random token ids (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, (n, length)).tolist()


def post(url: str, body: dict[str, Any], timeout_s: float = 120.0) -> tuple[int, dict[str, Any]]:
    """``POST url/v1/completions``; returns (status, JSON answer) for any status."""
    req = urllib.request.Request(f"{url}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def reference_answers(url: str, prompts: Sequence[Sequence[int]], max_tokens: int) -> list[list[int]]:
    """The server's answer to each prompt, sent concurrently (they batch like the load's requests)."""
    check_loopback(url)
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        got = list(pool.map(lambda p: post(url, {"prompt": list(p), "max_tokens": max_tokens}), prompts))
    bad = [(i, status, data) for i, (status, data) in enumerate(got) if status != 200]
    if bad:
        raise RuntimeError(f"reference requests failed: {bad[:3]}")
    return [data["tokens"] for _, data in got]


def run_locust(url: str, spec: LoadSpec, workdir: str | os.PathLike) -> dict[str, Any]:
    """Run locust headless against ``url`` (loopback only) with ``spec``; returns its records file's content.

    The locust process gets ``duration_s`` (or the stages' total) plus ``stop_timeout_s`` to let the
    requests in flight finish, and is killed after twice that.
    """
    check_loopback(url)
    out = Path(workdir) / f"locust-{time.time_ns()}.json"
    run_s = sum(s for s, _ in spec.stages) if spec.stages else spec.duration_s
    env = {**os.environ, "SERVING_LOAD": json.dumps({**asdict(spec), "out": str(out)})}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
           "-u", str(spec.users), "-r", str(spec.users), "--run-time", f"{int(np.ceil(run_s))}s",
           "--stop-timeout", str(int(spec.stop_timeout_s)), "--only-summary", "--loglevel", "WARNING"]
    limit = 2 * (run_s + spec.stop_timeout_s) + 60
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
    if not out.exists():
        raise RuntimeError(f"locust exited {proc.returncode} without writing {out}:\n{proc.stderr[-3000:]}")
    data = json.loads(out.read_text())
    data["returncode"], data["stderr_tail"] = proc.returncode, proc.stderr[-2000:]
    return data


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    arr = np.asarray(values, float)
    return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 95, 99)}


def summarize(records: Sequence[dict[str, Any]], references: Sequence[Sequence[int]] | None = None,
              devices: int = 1) -> dict[str, Any]:
    """Latency and TTFT percentiles, tokens/s, and every request's outcome counted.

    Args:
        records: the locust user's per-request records.
        references: the expected tokens per prompt index; None skips the correctness check.
        devices: accelerators serving (tokens/s is divided by it; 1 for a CPU host).

    Returns:
        ``requests``, counts per outcome, ``correct`` (answered with the reference tokens),
        ``availability`` (correct / requests), ``latency_*``/``ttft_*`` P50/P95/P99 in seconds,
        ``tokens_per_second`` and ``tokens_per_second_per_device``, ``retried`` (requests that needed > 1 attempt).
    """
    ok = [r for r in records if r["outcome"] == "ok"]
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    correct = sum(1 for r in ok if references is None or r["tokens"] == list(references[r["prompt"]]))
    latency = [r["done"] - r["sent"] for r in ok]
    ttft = [r["ttft_s"] for r in ok]
    span = (max(r["done"] for r in ok) - min(r["sent"] for r in records)) if ok else float("nan")
    tokens = sum(len(r["tokens"]) for r in ok)
    out: dict[str, Any] = {"requests": len(records), "outcomes": outcomes, "correct": correct,
                           "availability": correct / len(records) if records else float("nan"),
                           "retried": sum(1 for r in records if r["attempts"] > 1),
                           "tokens": tokens, "seconds": span,
                           "tokens_per_second": tokens / span if ok else 0.0,
                           "mean_batch_size": float(np.mean([r["batch_size"] for r in ok])) if ok else float("nan")}
    out["tokens_per_second_per_device"] = out["tokens_per_second"] / max(devices, 1)
    out.update({f"latency_{k}": v for k, v in _percentiles(latency).items()})
    out.update({f"ttft_{k}": v for k, v in _percentiles(ttft).items()})
    return out


def export_bench(directory: str | os.PathLike, config: str = "bench", batch_sizes: Sequence[int] | None = None,
                 seed: int = 0) -> str:
    """Export ``ModelConfig.<config>()`` with ``tf_impl``'s seeded initial weights to ``directory``."""
    from harness.config import ModelConfig
    from tf_impl.export import export_savedmodel
    from tf_impl.model import Transformer

    model = Transformer(ModelConfig.named(config), seed=seed)
    return str(export_savedmodel(model, directory, batch_sizes=batch_sizes, force=True))


def load_experiment(model_dir: str, *, users: int = 8, prompt_len: int = 64, max_tokens: int = 32,
                    duration_s: float = 60.0, n_prompts: int = 8, seed: int = 0, max_requests: int = 5000,
                    workdir: str | None = None) -> dict[str, Any]:
    """One replica of ``model_dir`` under ``users`` closed-loop locust clients for ``duration_s``; see the module
    docstring. Returns ``summarize``'s numbers plus the load's parameters and the replica's info."""
    from serving.cluster import free_port, local_server, wait_ready

    with tempfile.TemporaryDirectory(prefix="serving-load-", dir=workdir) as tmp, \
            local_server(model_dir, port=free_port(), replicas=1) as server:
        info = wait_ready(server.url, 60)
        meta = info["export"]
        prompts = seeded_prompts(n_prompts, prompt_len, meta["vocab_size"], seed)
        references = reference_answers(server.url, prompts, max_tokens)
        spec = LoadSpec(prompts, max_tokens, users=users, duration_s=duration_s, max_requests=max_requests)
        data = run_locust(server.url, spec, tmp)
    gpus = len(info["gpus"])  # what TensorFlow in the replica computes on; 0 on a CPU host (tensorflow-cpu)
    numbers = summarize(data["records"], references, devices=max(gpus, 1))
    numbers.update(users=users, prompt_len=prompt_len, max_tokens=max_tokens, duration_s=duration_s,
                   gpus=gpus, warm_up_s=info["warm_up_s"], locust_returncode=data["returncode"])
    return numbers


def replica_pids(url: str, expected: int, attempts: int = 200) -> set[int]:
    """The pids of ``expected`` distinct replicas, from ``GET /v1/info`` (the router spreads calls over
    replicas); at most ``attempts`` calls, else RuntimeError naming what was seen."""
    check_loopback(url)
    seen: set[int] = set()
    for _ in range(attempts):
        with urllib.request.urlopen(f"{url}/v1/info", timeout=30) as resp:
            seen.add(json.loads(resp.read())["replica"]["pid"])
        if len(seen) >= expected:
            return seen
    raise RuntimeError(f"saw replicas {sorted(seen)} in {attempts} calls to {url}/v1/info, expected {expected}")


class Background:
    """``run_locust`` in a thread, so the caller can inject faults and watch replicas while it runs."""

    def __init__(self, url: str, spec: LoadSpec, workdir: str | os.PathLike):
        self.started = time.time()
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._future = self._pool.submit(run_locust, url, spec, workdir)

    def running(self) -> bool:
        """True while locust has not exited."""
        return not self._future.done()

    def result(self) -> dict[str, Any]:
        """Wait for locust and return its records (re-raises its error)."""
        try:
            return self._future.result()
        finally:
            self._pool.shutdown()
