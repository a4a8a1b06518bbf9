"""Fixtures of the serving tests: a tiny export, and a server started by the README's command.

The server runs as ``python -m harness serve serve`` in a process of its own (its own session), on a free
port of 127.0.0.1. It is stopped with SIGINT, the way a user stops it, after the module's tests (or when
one fails); any process it started that is still alive afterwards is killed by its pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """ModelConfig.tiny() (seed 0) exported with batch sizes 1 and 4 and prefill chunks of 8."""
    from harness.config import ModelConfig
    from tf_impl import Transformer
    from tf_impl.export import export_savedmodel

    return export_savedmodel(Transformer(ModelConfig.tiny(), seed=0), tmp_path_factory.mktemp("serving") / "tiny",
                             batch_sizes=(1, 4), chunks=(8,))


class ServerProcess:
    """``python -m harness serve serve`` for an export, and its clean stop."""

    def __init__(self, model_dir: Path, port: int, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "serve", "--model", str(model_dir),
                                      "--port", str(port)], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.descendants: set[int] = set()

    def wait_ready(self) -> None:
        from serving.cluster import wait_ready

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                wait_ready(self.url, 2)
                self._remember_children()
                return
            except TimeoutError:
                pass
        raise TimeoutError(f"no answer from {self.url} in {READY_TIMEOUT_S} s:\n{self.log.read_text()[-3000:]}")

    def _remember_children(self) -> None:
        import psutil

        try:
            self.descendants |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass

    def stop(self, timeout_s: float = 90) -> tuple[int | None, list[int]]:
        """SIGINT, wait, then kill whatever is left (the server, then every process it had started).

        Returns (the server's exit code, None if it had to be killed; pids that were still alive)."""
        import psutil

        if self.proc.poll() is None:
            self._remember_children()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
                return None, sorted(self._kill_left())
        return self.proc.returncode, sorted(self._kill_left())

    def _kill_left(self) -> list[int]:
        import psutil

        left = []
        for pid in self.descendants:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        return left


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    """A running server of the tiny export; stopped (and checked clean) after the module's tests."""
    from serving.cluster import free_port

    srv = ServerProcess(tiny_export, free_port(), tmp_path_factory.mktemp("server") / "server.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
