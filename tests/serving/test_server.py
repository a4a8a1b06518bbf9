"""The completions server started by ``python -m harness serve serve``: answers, refuses bad requests with a clear
4xx and keeps serving, holds up under a short locust load, and stops without leaving a process behind."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest

from experiments.serving import LoadSpec, post, reference_answers, run_locust, seeded_prompts, summarize
from harness.config import ModelConfig
from tests.serving.conftest import ROOT


def _raw(url: str, body: bytes | list[bytes], headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """POST a raw body (a list of pieces is sent chunked, without Content-Length)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        chunked = isinstance(body, list)
        conn.request("POST", "/v1/completions", body=iter(body) if chunked else body,
                     headers={"Content-Type": "application/json", **(headers or {})}, encode_chunked=chunked)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_a_completion_is_tf_impls_greedy_continuation_with_timings(server):
    from tf_impl import Transformer

    prompt = [5, 17, 99, 3, 250, 42, 7, 8, 9, 10, 11]          # 11 tokens: one chunk of 8, then three decodes
    status, data = post(server.url, {"prompt": prompt, "max_tokens": 6})
    assert status == 200, data
    want = Transformer(ModelConfig.tiny(), seed=0).generate(np.array([prompt]), 6)[0].tolist()
    assert data["tokens"] == want
    assert data["usage"] == {"prompt_tokens": 11, "completion_tokens": 6}
    timing = data["timing"]
    assert 0 <= timing["queue_s"] <= timing["ttft_s"] <= timing["total_s"] and timing["batch_size"] == 1
    assert data["replica"]["pid"] > 0 and isinstance(data["text"], str)


def test_a_text_prompt_goes_through_the_byte_tokenizer(server):
    status, data = post(server.url, {"prompt": "héllo", "max_tokens": 2})
    assert status == 200 and data["usage"]["prompt_tokens"] == len("héllo".encode()) and len(data["tokens"]) == 2


BAD = {
    "malformed JSON": (b'{"prompt": [1, 2', 400, "not valid JSON"),
    "not an object": (b"[1, 2, 3]", 400, "must be a JSON object"),
    "no prompt": (b'{"max_tokens": 3}', 400, "'prompt' is missing"),
    "unknown field": (b'{"prompt": [1], "temperature": 0.7}', 400, "unknown field(s) ['temperature']"),
    "token id >= vocab": (b'{"prompt": [1, 256]}', 400, "token id 256, outside [0, vocab_size=256)"),
    "negative token id": (b'{"prompt": [-1, 2]}', 400, "token id -1, outside"),
    "non-integer ids": (b'{"prompt": [1.5, 2]}', 400, "non-integer items"),
    "empty prompt": (b'{"prompt": []}', 400, "prompt is empty"),
    "prompt longer than the context": (json.dumps({"prompt": [1] * 70}).encode(), 400,
                                       "exceeds the context of 64 tokens"),
    "prompt + max_tokens over the context": (json.dumps({"prompt": [1] * 60, "max_tokens": 5}).encode(), 400,
                                             "exceeds the context"),
    "negative max_tokens": (b'{"prompt": [1], "max_tokens": -3}', 400, "'max_tokens' must be an integer >= 1, got -3"),
    "zero max_tokens": (b'{"prompt": [1], "max_tokens": 0}', 400, "must be an integer >= 1"),
    "boolean max_tokens": (b'{"prompt": [1], "max_tokens": true}', 400, "must be an integer >= 1, got True"),
    "oversized body": (b'{"prompt": "' + b"a" * (2 << 20) + b'"}', 413, "exceeds the limit of 1048576 bytes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_request_gets_a_clear_4xx_and_the_server_keeps_serving(server, case):
    body, status, message = BAD[case]
    got, data = _raw(server.url, body)
    assert got == status and message in data["error"], (got, data)
    assert post(server.url, {"prompt": [1, 2, 3], "max_tokens": 2})[0] == 200


def test_an_oversized_body_without_content_length_is_refused_while_read(server):
    piece = b"1, " * 20000
    status, data = _raw(server.url, [b'{"prompt": ['] + [piece] * 20 + [b"1]}"])
    assert status == 413 and "exceeds the limit" in data["error"]
    assert post(server.url, {"prompt": [1], "max_tokens": 1})[0] == 200


def test_query_command_prints_the_answer_or_the_servers_error(server):
    def query(*args):
        return subprocess.run([sys.executable, "-m", "harness", "serve", "query", "--url", server.url, *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    ok = query("--prompt", "hi", "--max-tokens", "3")
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["tokens"]) == 3
    bad = query("--tokens", "1,99999")
    assert bad.returncode == 1 and "answered 400" in bad.stderr and "outside [0, vocab_size=256)" in bad.stderr


def test_a_short_locust_load_is_answered_correctly_and_batched(server, tmp_path):
    """4 users for 3 s: every request issued is answered with its prompt's reference tokens, and requests
    that arrive together are computed together."""
    prompts = seeded_prompts(4, 12, 256)
    references = reference_answers(server.url, prompts, 4)
    data = run_locust(server.url, LoadSpec(prompts, 4, users=4, duration_s=3, max_requests=400, stop_timeout_s=20),
                      tmp_path)
    numbers = summarize(data["records"], references)
    assert data["issued"] == numbers["requests"] > 4, data["stderr_tail"]
    assert numbers["outcomes"] == {"ok": numbers["requests"]} and numbers["availability"] == 1.0
    assert numbers["mean_batch_size"] > 1.0
    assert 0 < numbers["latency_p50"] <= numbers["latency_p95"] <= numbers["latency_p99"] < 60
    assert numbers["tokens_per_second"] > 0 and numbers["tokens"] == 4 * numbers["requests"]


def test_the_load_generator_stops_at_its_request_bound(server, tmp_path):
    data = run_locust(server.url, LoadSpec([[1, 2, 3]], 2, users=3, duration_s=120, max_requests=7), tmp_path)
    assert data["issued"] == 7 and all(r["outcome"] == "ok" for r in data["records"])
    assert max(r["done"] for r in data["records"]) - min(r["sent"] for r in data["records"]) < 60


def test_the_server_stops_on_ctrl_c_and_leaves_no_process(server):
    """Runs last in this module: the README's serve command ends cleanly on SIGINT, Ray's processes with it."""
    code, left = server.stop()
    assert code == 0 and left == [], (code, left, server.log.read_text()[-2000:])
