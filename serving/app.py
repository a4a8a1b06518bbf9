"""The Ray Serve deployment: an HTTP completions API with dynamic request batching in front of a SavedModel.

Each replica (a Ray actor process) loads the export with ``serving.runtime.ServingModel`` (TensorFlow
only) and warms it up before it reports ready. Requests are parsed and checked in the HTTP handler
(``serving.protocol``; a bad one is answered 4xx right there and never reaches the model), then
queued to ``_batched``, which ``@serve.batch`` calls with up to ``max_batch_size`` requests that
arrived within ``batch_wait_s`` of each other. The batch runs on one worker thread, so the replica's
event loop keeps accepting and queueing requests while the model computes.

Routes: ``POST /v1/completions`` (see ``serving.protocol``), ``GET /v1/info`` (the export's
description, this replica's pid and id, the GPUs TensorFlow sees, its warm-up time) and
``GET /v1/health``.
"""

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request as HTTPRequest
from fastapi.responses import JSONResponse
from ray import serve

from serving.protocol import MAX_BODY_BYTES, answer, body_too_large, parse_request
from serving.runtime import Completion, Request, RequestError, ServingModel, read_metadata

APP_NAME = "completions"
DEPLOYMENT = "Completions"
api = FastAPI(title="DeepSeek-V3 (tf_impl SavedModel) completions")


async def _read_body(request: HTTPRequest, limit: int) -> bytes:
    """The body, or a 413 RequestError as soon as it is known to exceed ``limit`` bytes (from the declared
    Content-Length before reading anything, else while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise body_too_large(len(body), limit)
    return bytes(body)


@serve.deployment(name=DEPLOYMENT)
@serve.ingress(api)
class Completions:
    """One replica: the loaded export, a one-thread pool for the model, and the batch queue."""

    def __init__(self, model_dir: str, max_batch_size: int | None = None, batch_wait_s: float = 0.01,
                 max_body_bytes: int = MAX_BODY_BYTES):
        self.model = ServingModel(model_dir)
        self.warm_up_s = self.model.warm_up()
        self.max_body_bytes = max_body_bytes
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._batched.set_max_batch_size(max_batch_size or self.model.batch_sizes[-1])
        self._batched.set_batch_wait_timeout_s(batch_wait_s)
        context = serve.get_replica_context()
        self.replica = {"pid": os.getpid(), "id": str(getattr(context.replica_id, "unique_id", context.replica_id))}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batched(self, requests: list[Request]) -> list[Completion]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.model.generate, requests)

    # No `from __future__ import annotations` in this module: FastAPI reads the parameter annotation to
    # pass the raw request.
    @api.post("/v1/completions")
    async def completions(self, request: HTTPRequest) -> Any:
        """Greedy completion of one prompt; 400/413 with ``{"error": ...}`` for a bad request."""
        arrived = time.time()
        try:
            body = await _read_body(request, self.max_body_bytes)
            req = parse_request(body, self.model.tokenize, self.model.check, arrived)
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        done = await self._batched(req)
        return answer(req, done, self.model.detokenize(done.tokens), self.replica)

    @api.get("/v1/info")
    async def info(self) -> dict[str, Any]:
        """The export's description and this replica's identity."""
        import tensorflow as tf

        return {"replica": self.replica, "warm_up_s": self.warm_up_s, "model_dir": str(self.model.path),
                "gpus": [d.name for d in tf.config.list_physical_devices("GPU")], "export": self.model.meta}

    @api.get("/v1/health")
    async def health(self) -> dict[str, str]:
        """``{"status": "ok"}`` once the replica is loaded and warm."""
        return {"status": "ok"}


def application(model_dir: str, *, replicas: int = 1, autoscaling: dict[str, Any] | None = None,
                max_batch_size: int | None = None, batch_wait_s: float = 0.01, num_cpus: float = 1.0,
                num_gpus: float = 0.0, max_body_bytes: int = MAX_BODY_BYTES):
    """The bound Serve application for ``model_dir``.

    Args:
        model_dir: a directory written by ``tf_impl.export.export_savedmodel`` (absolute: replicas run elsewhere).
        replicas: fixed number of replicas (ignored when ``autoscaling`` is given).
        autoscaling: a Ray Serve ``autoscaling_config`` (min_replicas, max_replicas, target_ongoing_requests, ...).
        max_batch_size: requests per batch; default the export's largest batch size.
        batch_wait_s: how long a batch waits for more requests once the first arrived.
        num_cpus, num_gpus: Ray resources each replica reserves (a GPU must be reserved to be visible to it).
        max_body_bytes: larger request bodies are refused with 413.

    Returns:
        the application to pass to ``serve.run``.
    """
    meta = read_metadata(model_dir)
    top = max_batch_size or max(meta["batch_sizes"])
    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus},
                               # room for the next batch to queue while one computes
                               "max_ongoing_requests": 2 * top}
    if autoscaling:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = replicas
    return Completions.options(**options).bind(str(model_dir), max_batch_size, batch_wait_s, max_body_bytes)
