"""P6's experiments: how outcomes are counted, loopback-only targets, and (slow) the fault and autoscaling runs on
the tiny export."""

from __future__ import annotations

import math

import pytest

from experiments.serving import check_loopback, summarize
from tests.serving.conftest import tiny_export  # noqa: F401 (the fixture, shared with the server tests)


def _record(i: int, outcome: str, sent: float, done: float | None = None, tokens=(1, 2), prompt: int = 0,
            attempts: int = 1) -> dict:
    rec = {"id": i, "prompt": prompt, "sent": sent, "attempts": attempts, "statuses": [200] * attempts,
           "outcome": outcome}
    if outcome == "ok":
        rec.update(done=done, tokens=list(tokens), ttft_s=0.1 * (i + 1), batch_size=2, pid=1, started=sent)
    return rec


def test_summarize_counts_every_outcome_and_only_right_answers_as_available():
    records = [_record(0, "ok", 0.0, 1.0), _record(1, "ok", 0.0, 2.0, attempts=2), _record(2, "ok", 1.0, 3.0, (9, 9)),
               _record(3, "failed", 1.0), _record(4, "unfinished", 2.0), _record(5, "rejected", 2.0)]
    got = summarize(records, references=[[1, 2]])
    assert got["requests"] == 6 and got["outcomes"] == {"ok": 3, "failed": 1, "unfinished": 1, "rejected": 1}
    assert got["correct"] == 2 and got["availability"] == pytest.approx(2 / 6)   # the wrong answer is not available
    assert got["retried"] == 1
    assert got["tokens"] == 6 and got["seconds"] == 3.0 and got["tokens_per_second"] == 2.0
    assert got["latency_p50"] == got["latency_p99"] == 2.0                       # latencies 1, 2, 2 s
    assert got["ttft_p50"] == pytest.approx(0.2)
    assert summarize(records, [[1, 2]], devices=2)["tokens_per_second_per_device"] == 1.0


def test_summarize_of_nothing_answered_has_no_latency():
    got = summarize([_record(0, "failed", 0.0)])
    assert got["availability"] == 0.0 and got["tokens_per_second"] == 0.0 and math.isnan(got["latency_p95"])


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.3.4.5:1", "http://localhost:9", "http://[::1]:80"])
def test_loopback_targets_are_accepted(url):
    check_loopback(url)


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://192.168.1.2", "http://example.com", "http://0.0.0.0"])
def test_any_other_target_is_refused(url):
    with pytest.raises(ValueError, match="not a loopback address"):
        check_loopback(url)


@pytest.mark.slow
def test_a_killed_replica_loses_no_request(tiny_export):
    from experiments.serving_faults import fault_experiment

    got = fault_experiment(str(tiny_export), users=4, prompt_len=12, max_tokens=4, duration_s=45, kill_at_s=8,
                           retries=3)
    assert got["requests"] == sum(got["outcomes"].values()) > 100
    assert got["availability"] == 1.0, got["outcomes"]
    assert got["requests_after_kill"] > 0 and got["killed_pid"] > 0
    assert got["replacement_served"] == 1 and got["replaced_s"] < 45


@pytest.mark.slow
def test_autoscaler_adds_a_replica_under_a_load_step_and_retires_it(tiny_export):
    from experiments.serving_autoscale import autoscale_experiment

    got = autoscale_experiment(str(tiny_export), low_users=1, high_users=4, low_s=15, high_s=90, down_s=45,
                               prompt_len=12, max_tokens=4, max_batch_size=4)
    assert got["scaled_up"] == 1 and 0 < got["autoscale_s"] < 90 and got["max_running"] == 2
    assert got["retired"] == 1 and got["retire_s"] > 0
    assert got["availability"] == 1.0, got["outcomes"]
