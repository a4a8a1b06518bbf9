"""Serving the bench model with Ray Serve under load, faults and autoscaling. Criteria: P6.latency_p95,
P6.throughput_per_gpu, P6.availability, P6.autoscale_time (by proxy on this CPU host).

Every class exports ``ModelConfig.bench()`` (tf_impl's seeded weights) as a SavedModel with one batch
size, 8, in its ``setup_cache`` (``experiments.serving.export_bench``), serves it from a private Ray
cluster on 127.0.0.1 and drives it with locust (headless, in its own process) at the workload ``WORKLOAD``
states: 8 closed-loop users, 64-token prompts, 32 greedy tokens per answer.

All three are full tier (``python -m harness run --full``): starting Ray and a replica (TensorFlow import,
SavedModel load, XLA warm-up) alone takes ~40 s on this host, so even the plain load test does not fit the
main job's budget.

Wall times below are setup_cache's, measured once on this 2-core host while other jobs kept its load average
at 14-37 (so, slower than on an idle host).

* ``ServingLoadFull`` (162 s): one replica, 60 s of load (``experiments.serving.load_experiment``).
* ``ServingFaultsFull`` (630 s: the 480 s cap was reached at 1,097 requests): two replicas, 8 users asking 4 tokens after 16-token prompts
  until 1,200 requests were issued (the > 1,000 a 0.1% share needs; at most 480 s), one replica's process
  killed with SIGKILL 20 s in, clients retrying failed attempts (``experiments.serving_faults``). The
  requests are short because the share needs many of them: the first version asked 8 tokens after 64-token
  prompts for 150 s and issued only 143 requests on this host, too few to resolve 0.1%.
* ``ServingAutoscaleFull`` (327 s): 1 to 2 replicas under Ray Serve's autoscaler, 1 user
  for 30 s, 8 for 150 s, none for 60 s (``experiments.serving_autoscale``).
"""

from __future__ import annotations

WORKLOAD = {"users": 8, "prompt_len": 64, "max_tokens": 32}
# Short requests, bounded by count: the fault run must hold the > 1,000 requests a 0.1% share needs.
FAULTS = {"users": 8, "prompt_len": 16, "max_tokens": 4, "max_requests": 1200, "duration_s": 480.0}


def _exported(tmp: str) -> str:
    from experiments.serving import export_bench

    return export_bench(f"{tmp}/bench-export", batch_sizes=(8,))


class ServingLoadFull:
    """Latency, time to first token and tokens/s of one replica under the stated load (full tier)."""

    version = "1"
    duration_s = 60.0

    def setup_cache(self):
        import tempfile

        from experiments.serving import load_experiment

        with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
            return load_experiment(_exported(tmp), duration_s=self.duration_s, **WORKLOAD)

    setup_cache.timeout = 600

    def track_latency_p95(self, numbers):
        """P6.latency_p95: 95th percentile of client-side request latency (send to full answer), seconds."""
        return numbers["latency_p95"]

    track_latency_p95.unit = "s"
    track_latency_p95.pretty_name = "Serving latency P95 (bench model, 8 users, 64+32 tokens)"

    def track_latency_p50(self, numbers):
        """P6.latency_p95 (context): median request latency."""
        return numbers["latency_p50"]

    track_latency_p50.unit = "s"
    track_latency_p50.pretty_name = "Serving latency P50"

    def track_latency_p99(self, numbers):
        """P6.latency_p95 (context): 99th percentile of request latency."""
        return numbers["latency_p99"]

    track_latency_p99.unit = "s"
    track_latency_p99.pretty_name = "Serving latency P99"

    def track_ttft_p95(self, numbers):
        """P6.latency_p95 (context): 95th percentile of the server's time to first token."""
        return numbers["ttft_p95"]

    track_ttft_p95.unit = "s"
    track_ttft_p95.pretty_name = "Serving time to first token P95"

    def track_tokens_per_second_per_device(self, numbers):
        """P6.throughput_per_gpu: completion tokens per second per accelerator (the whole host on a CPU host)."""
        return numbers["tokens_per_second_per_device"]

    track_tokens_per_second_per_device.unit = "tokens/s"
    track_tokens_per_second_per_device.pretty_name = "Serving throughput per device"

    def track_correct(self, numbers):
        """P6.latency_p95 (context): share of requests answered with exactly their reference tokens."""
        return numbers["availability"]

    track_correct.unit = "fraction"
    track_correct.pretty_name = "Requests answered correctly under load"


class ServingFaultsFull:
    """Availability under a replica killed with SIGKILL during the load (full tier)."""

    version = "2"

    def setup_cache(self):
        import tempfile

        from experiments.serving_faults import fault_experiment

        with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
            return fault_experiment(_exported(tmp), kill_at_s=20.0, retries=3, **FAULTS)

    setup_cache.timeout = 1200

    def track_availability(self, numbers):
        """P6.availability: requests answered with their reference tokens / requests issued, one replica killed."""
        return numbers["availability"]

    track_availability.unit = "fraction"
    track_availability.pretty_name = "Availability with a replica killed under load"

    def track_requests(self, numbers):
        """P6.availability: requests issued in the run (>= 1,000 for the share to resolve 0.1%)."""
        return numbers["requests"]

    track_requests.unit = "requests"
    track_requests.pretty_name = "Requests issued in the fault run"

    def track_retried_share(self, numbers):
        """P6.availability (context): share of requests that needed a retry."""
        return numbers["retried"] / max(numbers["requests"], 1)

    track_retried_share.unit = "fraction"
    track_retried_share.pretty_name = "Requests retried after the kill"

    def track_replacement_seconds(self, numbers):
        """P6.availability (context): seconds from the kill until two replicas ran again."""
        return numbers["replaced_s"]

    track_replacement_seconds.unit = "s"
    track_replacement_seconds.pretty_name = "Time to replace the killed replica"


class ServingAutoscaleFull:
    """Time for Ray Serve's autoscaler to bring a new replica into service after a load step (full tier)."""

    version = "1"

    def setup_cache(self):
        import tempfile

        from experiments.serving_autoscale import autoscale_experiment

        with tempfile.TemporaryDirectory(prefix="bench-autoscale-") as tmp:
            return autoscale_experiment(_exported(tmp), low_users=1, high_users=WORKLOAD["users"],
                                        prompt_len=WORKLOAD["prompt_len"], max_tokens=WORKLOAD["max_tokens"])

    setup_cache.timeout = 1500

    def track_autoscale_seconds(self, numbers):
        """P6.autoscale_time: seconds from the load step until a new replica computes requests."""
        return numbers["autoscale_s"]

    track_autoscale_seconds.unit = "s"
    track_autoscale_seconds.pretty_name = "Autoscaling: load step to a new replica serving"

    def track_replicas_retired(self, numbers):
        """P6.autoscale_time: 1 when the extra replica retired after the load stepped down."""
        return numbers["retired"]

    track_replicas_retired.unit = "bool"
    track_replicas_retired.pretty_name = "Autoscaling: replicas retire after the step down"

    def track_ready_seconds(self, numbers):
        """P6.autoscale_time (context): seconds from the load step until two replicas were running."""
        return numbers["ready_s"]

    track_ready_seconds.unit = "s"
    track_ready_seconds.pretty_name = "Autoscaling: load step to two replicas running"

    def track_retire_seconds(self, numbers):
        """P6.autoscale_time (context): seconds from the step down until one replica was left."""
        return numbers["retire_s"]

    track_retire_seconds.unit = "s"
    track_retire_seconds.pretty_name = "Autoscaling: step down to one replica"
