"""``python -m harness serve``'s refusals: each bad input exits 2 with a message naming the problem and the fix,
before any cluster starts (these run in this process, in seconds)."""

from __future__ import annotations

import shutil

import pytest

from harness.serve_cli import main


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_export_keeps_an_existing_directory_without_force(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    code, err = _run(capsys, "export", "--config", "tiny", "--out", str(tmp_path / "out"))
    assert code == 2 and "already exists" in err and "--force" in err
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_the_readmes_export_command_writes_an_export_the_server_accepts(tmp_path, capsys):
    from serving.runtime import check_export

    code = main(["export", "--config", "tiny", "--out", str(tmp_path / "tiny"), "--batch-sizes", "1", "--chunks", "8"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "exporting tf_impl's initial weights (seed 0), not a trained model" in captured.err
    meta = check_export(tmp_path / "tiny")
    assert meta["batch_sizes"] == [1] and meta["chunks"] == [8] and meta["config"]["vocab_size"] == 256


@pytest.mark.parametrize(("args", "message"), [
    (["--state", "/nonexistent/weights.safetensors"], "weights.safetensors"),
    (["--config", "no-such-config"], "no-such-config"),
    (["--batch-sizes", "1,x"], "--batch-sizes must be comma-separated integers"),
    (["--chunks", "8,1"], "must not contain 1"),
])
def test_export_refuses_bad_arguments(tmp_path, capsys, args, message):
    code, err = _run(capsys, "export", "--out", str(tmp_path / "out"), *args)
    assert code == 2 and message in err and not (tmp_path / "out").exists(), err


def test_serve_refuses_a_missing_or_corrupt_export_before_starting_anything(tiny_export, tmp_path, capsys):
    code, err = _run(capsys, "serve", "--model", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err
    bad = tmp_path / "bad"
    shutil.copytree(tiny_export, bad)
    (bad / "saved_model.pb").write_bytes(b"not a saved model" * 10)
    code, err = _run(capsys, "serve", "--model", str(bad))
    assert code == 2 and "does not parse as a SavedModel" in err and "--force" in err


def test_serve_refuses_a_bad_autoscale_range(tiny_export, capsys):
    from serving.cluster import free_port

    code, err = _run(capsys, "serve", "--model", str(tiny_export), "--autoscale", "3:1", "--port", str(free_port()))
    assert code == 2 and "--autoscale must be MIN:MAX with 1 <= MIN <= MAX, got '3:1'" in err


def test_query_without_a_server_says_how_to_start_one(capsys):
    from serving.cluster import free_port

    code, err = _run(capsys, "query", "--url", f"http://127.0.0.1:{free_port()}", "--prompt", "hi", "--timeout", "5")
    assert code == 2 and "no answer from" in err and "serve serve --model DIR" in err
    code, err = _run(capsys, "query", "--tokens", "1,a")
    assert code == 2 and "--tokens must be comma-separated integers" in err


@pytest.mark.slow
def test_serve_gives_up_with_the_replicas_error_when_the_weights_are_damaged(tiny_export, tmp_path):
    """Truncated weights pass the cheap check; the replicas fail to load them, Ray Serve gives up after its
    retries, and the command exits 2 with the replicas' own message instead of waiting out its timeout."""
    import subprocess
    import sys
    import time

    from serving.cluster import free_port
    from tests.serving.conftest import ROOT

    bad = tmp_path / "bad"
    shutil.copytree(tiny_export, bad)
    for f in (bad / "variables").glob("variables.data-*"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "serve", "serve", "--model", str(bad),
                           "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "failed to deploy" in proc.stderr and "TensorFlow cannot load the SavedModel" in proc.stderr
    assert time.monotonic() - began < 400   # well under the 600 s readiness timeout
