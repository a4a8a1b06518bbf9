"""Start and stop a small, private, loopback-only Ray cluster with the completions app on it.

Footprint (the host has 2 cores and shared memory): ``num_cpus=2``, no dashboard, a 100 MB object
store, usage statistics off, and a temp directory of its own (``address="local"`` always starts a new
cluster, never joins another user's). Loopback only: Ray's processes listen and connect on 127.0.0.1
(``_loopback_only``; by default Ray binds every interface and talks to the host's routable address),
and the HTTP proxy listens on 127.0.0.1 unless told otherwise. ``local_server``
shuts everything down on exit, even after an error: ``serve.shutdown()``, ``ray.shutdown()``, and
then any process Ray started that is still alive is killed by its pid. Ray waits a fixed 30 s for its
node to register; on a crowded host that can pass, so ``start`` tries up to ``RAY_START_ATTEMPTS`` times
before it says the machine is overloaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8000
OBJECT_STORE_BYTES = 100 * 1024 * 1024
READY_TIMEOUT_S = 600.0
RAY_START_ATTEMPTS = 3   # Ray gives its raylet a fixed 30 s to register, too short on a crowded 2-core host


class RayStartFailed(RuntimeError):
    """Ray's own processes did not come up on this machine."""


@dataclass
class Server:
    """A running completions server: its base URL and what ``stop`` needs to clean up."""

    url: str
    temp_dir: str
    gpus: int = 0
    processes: set[int] = field(default_factory=set)   # pids of Ray's processes, killed by stop() if still alive


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (for tests and experiments that must not collide with others)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _loopback_only() -> None:
    """Make Ray use 127.0.0.1 for every process and connection.

    Ray resolves a node address of 127.0.0.1 to the host's routable address unless its single-machine
    mode is on (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by ``ray._private.ray_constants``); with it,
    ``get_node_ip_address`` is the loopback address, so the GCS, raylet, agents and workers bind and
    dial 127.0.0.1 only. The environment variable reaches Ray's child processes; the constant is also
    set in this process in case Ray was imported before.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def descendants() -> set[int]:
    """Pids of every process this process started, directly or not (Ray's daemons, workers, replicas)."""
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def start(model_dir: str, *, port: int = DEFAULT_PORT, host: str = LOOPBACK, num_cpus: int = 2,
          ready_timeout_s: float = READY_TIMEOUT_S, **app_options: Any) -> Server:
    """Start Ray and Serve and deploy the completions app for ``model_dir``; return once it answers.

    Args:
        model_dir: a serving export (``tf_impl.export``).
        port, host: where the HTTP proxy listens (loopback by default).
        num_cpus: CPUs Ray may schedule on.
        ready_timeout_s: give up (and stop everything) when the app does not answer within this time.
        **app_options: passed to ``serving.app.application`` (replicas, autoscaling, max_batch_size, ...).

    Returns:
        the Server; call ``stop(server)`` (or use ``local_server``) to shut it down.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _loopback_only()
    import ray
    from ray import serve

    from serving.app import APP_NAME, application

    model_dir = os.path.abspath(model_dir)
    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live under it
        server = Server(f"http://{host}:{port}", temp_dir)
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=OBJECT_STORE_BYTES, _node_ip_address=LOOPBACK, _temp_dir=temp_dir,
                     namespace="serving", log_to_driver=False, configure_logging=False)
            break
        except Exception as exc:  # noqa: BLE001 (Ray raises a bare Exception for a node that did not come up)
            stop(server)
            if "timed out during startup" not in str(exc):
                raise
            if attempt == RAY_START_ATTEMPTS:
                raise RayStartFailed(f"Ray's node did not come up within its 30 s, {attempt} times ({exc}); the "
                                     "machine is overloaded: try again when it is quieter") from None
    try:
        server.gpus = int(ray.cluster_resources().get("GPU", 0))
        app_options.setdefault("num_gpus", 1 if server.gpus else 0)
        serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
        try:  # serve.run waits for the deployment and raises a bare RuntimeError when it failed
            serve.run(application(model_dir, **app_options), name=APP_NAME, route_prefix="/", blocking=False)
        except RuntimeError as exc:
            raise DeployFailed(_failure_message() or str(exc)) from None
        server.processes = descendants()
        _wait_deployed(server.url, ready_timeout_s)
    except BaseException:
        stop(server)
        raise
    return server


def wait_ready(url: str, timeout_s: float) -> dict[str, Any]:
    """Poll ``GET url/v1/info`` until it answers 200 (at most ``timeout_s``); returns the info."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v1/info", timeout=10) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"the server at {url} did not answer /v1/info within {timeout_s:.0f} s (last error: {last})")


class DeployFailed(RuntimeError):
    """Ray Serve gave up on the deployment: its replicas failed to start (the message says why)."""


def _failure_message() -> str:
    """Why the completions app failed to deploy (its replicas' errors), or "" while it has not failed."""
    from ray import serve

    from serving.app import APP_NAME

    app = serve.status().applications.get(APP_NAME)
    if app is None or str(getattr(app.status, "value", app.status)) != "DEPLOY_FAILED":
        return ""
    messages = [app.message] + [d.message for d in app.deployments.values()]
    return "the completions app failed to deploy: " + " | ".join(m for m in messages if m)[-3000:]


def _wait_deployed(url: str, timeout_s: float) -> dict[str, Any]:
    """``wait_ready``, but give up as soon as Ray Serve reports the app DEPLOY_FAILED (a replica's constructor
    failed its retries, e.g. on a corrupt export), with the replicas' error instead of a timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        message = _failure_message()
        if message:
            raise DeployFailed(message)
        try:
            return wait_ready(url, min(5.0, max(deadline - time.monotonic(), 0.1)))
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise


def replica_counts() -> dict[str, int]:
    """``{replica state: count}`` of the completions deployment (RUNNING, STARTING, STOPPING, ...)."""
    from ray import serve

    from serving.app import APP_NAME, DEPLOYMENT

    status = serve.status().applications.get(APP_NAME)
    if status is None or DEPLOYMENT not in status.deployments:
        return {}
    return {str(getattr(k, "value", k)): int(v) for k, v in status.deployments[DEPLOYMENT].replica_states.items()}


def stop(server: Server, grace_s: float = 20.0) -> list[int]:
    """Shut Serve and Ray down, then kill any of Ray's processes still alive; returns the pids it had to kill."""
    import psutil
    import ray
    from ray import serve

    server.processes |= descendants()
    with contextlib.suppress(Exception):
        if ray.is_initialized():
            serve.shutdown()
    with contextlib.suppress(Exception):
        ray.shutdown()
    deadline = time.monotonic() + grace_s
    alive = [p for p in server.processes if psutil.pid_exists(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    killed = []
    for pid in alive:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
            killed.append(pid)
    shutil.rmtree(server.temp_dir, ignore_errors=True)
    return killed


@contextlib.contextmanager
def local_server(model_dir: str, **options: Any) -> Iterator[Server]:
    """``start`` on entry, ``stop`` on exit (also when the body raises)."""
    server = start(model_dir, **options)
    try:
        yield server
    finally:
        stop(server)
