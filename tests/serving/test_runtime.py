"""serving.runtime and serving.protocol in this process: batching by prompt length, padding to an exported batch
size, the chunk plan, request checks and the wire format (no Ray here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.config import ModelConfig
from serving.protocol import MAX_BODY_BYTES, answer, body_too_large, parse_request
from serving.runtime import Request, RequestError, ServingModel, chunk_plan, read_metadata


@pytest.fixture(scope="module")
def served(tiny_export):
    return ServingModel(tiny_export)


@pytest.fixture(scope="module")
def tiny():
    from tf_impl import Transformer

    return Transformer(ModelConfig.tiny(), seed=0)


def test_chunk_plan_takes_the_longest_chunks_first_then_single_tokens():
    assert chunk_plan(83, (8, 64)) == [64, 8, 8, 1, 1, 1]
    assert chunk_plan(5, (8,)) == [1] * 5 and chunk_plan(16, (8,)) == [8, 8]
    assert sum(chunk_plan(1000, (64, 8))) == 1000


def test_mixed_prompt_lengths_and_more_requests_than_a_batch_match_tf_impl(served, tiny):
    """Six requests: lengths 3, 9, 3, 9, 9, 9 and 2..5 new tokens. Same-length prompts share a batch (padded to
    the exported size 4 or split past it); each answer equals tf_impl's greedy continuation of its prompt alone."""
    rng = np.random.default_rng(3)
    lengths, news = [3, 9, 3, 9, 9, 9], [2, 5, 3, 4, 2, 5]
    prompts = [rng.integers(0, 256, n).tolist() for n in lengths]
    got = served.generate([Request(p, n) for p, n in zip(prompts, news)])
    for p, n, done in zip(prompts, news, got):
        assert done.tokens == tiny.generate(np.array([p]), n)[0].tolist()
        assert done.started <= done.first_token <= done.finished
    assert [d.batch_size for d in got] == [2, 4, 2, 4, 4, 4]
    assert served.bucket(1) == 1 and served.bucket(2) == 4 and served.bucket(9) == 4


def test_checks_name_the_problem(served):
    with pytest.raises(RequestError, match="empty"):
        served.check([], 1)
    with pytest.raises(RequestError, match=r"token id 300, outside \[0, vocab_size=256\)"):
        served.check([1, 300], 1)
    with pytest.raises(RequestError, match="60 tokens \\+ max_tokens=5 exceeds the context of 64"):
        served.check([0] * 60, 5)
    served.check([0] * 60, 4)


def test_byte_tokenizer_round_trip_and_ids_without_text(served):
    ids = served.tokenize("naïve ✓")
    assert ids == list("naïve ✓".encode()) and served.detokenize(ids) == "naïve ✓"
    assert served.detokenize([104, 300]) is None


def test_not_an_export_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a serving export.*serve export"):
        read_metadata(tmp_path)
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / "assets.extra" / "serving.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format 99.*export the model again"):
        read_metadata(tmp_path)


def test_parse_request_accepts_ids_or_text_and_defaults_max_tokens(served):
    req = parse_request(b'{"prompt": [1, 2]}', served.tokenize, served.check, arrived=5.0)
    assert (req.prompt, req.max_tokens, req.arrived) == ([1, 2], 16, 5.0)
    req = parse_request(json.dumps({"prompt": "ab", "max_tokens": 3}).encode(), served.tokenize, served.check, 0.0)
    assert req.prompt == [97, 98] and req.max_tokens == 3
    with pytest.raises(RequestError, match="not valid JSON") as err:
        parse_request(b"\xff\xfe", served.tokenize, served.check, 0.0)
    assert err.value.status == 400
    assert body_too_large(MAX_BODY_BYTES + 1).status == 413


def test_answer_reports_timings_from_arrival(served):
    req = Request([1, 2, 3], 2, arrived=100.0)
    (done,) = served.generate([req])
    out = answer(req, done, served.detokenize(done.tokens), {"pid": 1, "id": "r"})
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 2} and out["tokens"] == done.tokens
    assert out["timing"]["ttft_s"] == done.first_token - 100.0 and out["replica"] == {"pid": 1, "id": "r"}


def _damaged(tiny_export, tmp_path, damage) -> str:
    """A copy of the tiny export with ``damage(path)`` applied to it."""
    import shutil

    path = tmp_path / "damaged"
    shutil.copytree(tiny_export, path)
    damage(path)
    return str(path)


def _truncate(file):
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


DAMAGE = {
    "no saved_model.pb": (lambda p: (p / "saved_model.pb").unlink(), "lacks saved_model.pb"),
    "garbage saved_model.pb": (lambda p: (p / "saved_model.pb").write_bytes(b"not a saved model" * 10),
                               "does not parse as a SavedModel"),
    "empty saved_model.pb": (lambda p: (p / "saved_model.pb").write_bytes(b""), "holds no graph"),
    "no weights": (lambda p: [f.unlink() for f in (p / "variables").glob("variables.data-*")], "lacks its weights"),
    "no variables index": (lambda p: (p / "variables" / "variables.index").unlink(), "lacks variables/variables.index"),
    "corrupt serving.json": (lambda p: (p / "assets.extra" / "serving.json").write_text('{"format": 1, '),
                             "serving.json is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_export_is_refused_before_loading_naming_the_file_and_the_fix(tiny_export, tmp_path, case):
    from serving.runtime import ExportInvalid, check_export

    damage, message = DAMAGE[case]
    path = _damaged(tiny_export, tmp_path, damage)
    for action in (check_export, ServingModel):
        with pytest.raises(ExportInvalid, match="serve export --out DIR --force") as err:
            action(path)
        assert message in str(err.value), str(err.value)


def test_weights_damaged_inside_are_a_clear_error_from_the_load(tiny_export, tmp_path):
    """Truncated weights pass the cheap check (the files are there) and fail TensorFlow's restore: the error says
    which export, that its files are damaged and how to fix it, not TensorFlow's traceback."""
    from serving.runtime import ExportInvalid, check_export

    path = _damaged(tiny_export, tmp_path, lambda p: [_truncate(f) for f in (p / "variables").glob("variables.data-*")])
    check_export(path)
    with pytest.raises(ExportInvalid, match=r"TensorFlow cannot load the SavedModel in .*damaged.*corrupt or "
                                            r"incomplete; write it again"):
        ServingModel(path)


def test_metadata_that_does_not_match_the_signatures_is_refused(tiny_export, tmp_path):
    from serving.runtime import ExportInvalid

    def claim_batch_8(p):
        meta = json.loads((p / "assets.extra" / "serving.json").read_text())
        meta["batch_sizes"] = [1, 4, 8]
        (p / "assets.extra" / "serving.json").write_text(json.dumps(meta))

    with pytest.raises(ExportInvalid, match=r"lacks the signatures \['new_cache_b8', 'decode_b8', 'prefill_b8_t8'\]"):
        ServingModel(_damaged(tiny_export, tmp_path, claim_batch_8))


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*serve export --out DIR"):
        read_metadata(tmp_path / "nowhere")
