"""P4.checkpoint_time: save + load time of a training checkpoint, measured and extrapolated to 671B.

The measured thing is ``tf_impl.checkpoint``'s own save and load (SHA-256 hashing and fsync included)
of a checkpoint of the bench model's tensors; ``extrapolate_checkpoint_time`` scales the measured
throughputs linearly in bytes to a config too large to build here. That scaling is an
EXTRAPOLATION, not a measurement, and the report says so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.config import ModelConfig
from harness.state import expected_shapes, num_params


def random_state(cfg: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded N(0, 1) tensors with the canonical names and shapes of ``cfg`` (no model is built)."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in expected_shapes(cfg).items()}


def measure_checkpoint_io(
    model_state: Mapping[str, Any],
    optimizer_state: Mapping[str, Any] | None = None,
    directory: str | os.PathLike | None = None,
    repeats: int = 3,
) -> dict[str, float]:
    """Median save and load time (hashing and fsync included) of one checkpoint, and its throughput.

    Loads are from the page cache, so ``load_gb_s`` is an upper bound on a cold read.

    Args:
        model_state: ``{name: array}`` of the weights to write.
        optimizer_state: ``{name: array}`` of the optimizer slots, or None.
        directory: where the temporary checkpoints go (default: the system temp dir); pick the disk
            whose throughput matters.
        repeats: save/load rounds; the median is reported.

    Returns:
        ``{"bytes", "save_s", "load_s", "save_gb_s", "load_gb_s"}`` (GB = 1e9 bytes), all floats.
    """
    from tf_impl.checkpoint import load_checkpoint, save_checkpoint

    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        save_times, load_times, nbytes = [], [], 0
        for r in range(repeats):
            path = os.path.join(tmp, f"step_{r:08d}")
            t0 = time.perf_counter()
            save_checkpoint(path, model_state, optimizer_state, step=r)
            save_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            load_checkpoint(path)
            load_times.append(time.perf_counter() - t0)
            nbytes = sum(p.stat().st_size for p in Path(path).iterdir())
            shutil.rmtree(path)
    save_s, load_s = float(np.median(save_times)), float(np.median(load_times))
    return {"bytes": float(nbytes), "save_s": save_s, "load_s": load_s,
            "save_gb_s": nbytes / save_s / 1e9, "load_gb_s": nbytes / load_s / 1e9}


def checkpoint_io_for_config(cfg: ModelConfig, directory: str | os.PathLike | None = None, repeats: int = 3) -> dict[str, float]:
    """``measure_checkpoint_io`` for a training checkpoint of ``cfg``: fp32 weights plus AdamW's m and v.

    The tensors have the canonical names and shapes of ``cfg`` with random values (no model is built),
    so large configs can be measured without the time and memory of initialising a model.

    Args:
        cfg: the config whose canonical state is written.
        directory: where the temporary checkpoints go (default: the system temp dir).
        repeats: save/load rounds; the median is reported.

    Returns:
        the dict of ``measure_checkpoint_io``.
    """
    state = random_state(cfg)
    slots = {f"{slot}.{name}": np.zeros_like(a) for name, a in state.items() for slot in ("m", "v")}
    slots["count"] = np.zeros((), np.int64)
    return measure_checkpoint_io(state, slots, directory, repeats)


def extrapolate_checkpoint_time(
    save_gb_s: float, load_gb_s: float, cfg: ModelConfig | None = None, bytes_per_param: int = 12
) -> dict[str, float]:
    """EXTRAPOLATION, not a measurement: save/load seconds of a ``cfg`` (default 671B) training checkpoint.

    Bytes = ``num_params(cfg) * bytes_per_param`` (12 = fp32 master weight + AdamW m and v), divided
    by throughputs measured on a smaller model. Assumes throughput stays flat with size (one host,
    one disk, no sharding).

    Args:
        save_gb_s: measured save throughput in GB/s (1e9 bytes).
        load_gb_s: measured load throughput in GB/s.
        cfg: the config to extrapolate to; None means ``ModelConfig.v3_671b()``.
        bytes_per_param: checkpoint bytes per parameter.

    Returns:
        ``{"params", "bytes", "extrapolated_save_s", "extrapolated_load_s"}``, all floats.
    """
    cfg = cfg or ModelConfig.v3_671b()
    params = num_params(cfg)
    nbytes = params * bytes_per_param
    return {"params": float(params), "bytes": float(nbytes),
            "extrapolated_save_s": nbytes / (save_gb_s * 1e9), "extrapolated_load_s": nbytes / (load_gb_s * 1e9)}


def checkpoint_criterion(cfg: ModelConfig | None = None, repeats: int = 3) -> dict[str, float]:
    """Criterion numbers: measured save/load of a ``cfg`` (default bench) checkpoint + the 671B extrapolation.

    Args:
        cfg: the config measured; None means ``ModelConfig.bench()``.
        repeats: save/load rounds; the median is reported.

    Returns:
        ``bytes, save_s, load_s, save_gb_s, load_gb_s`` (measured) and ``params_671b, bytes_671b,
        extrapolated_671b_save_s, extrapolated_671b_load_s`` (extrapolated at the measured throughput).
    """
    measured = checkpoint_io_for_config(cfg or ModelConfig.bench(), repeats=repeats)
    ext = extrapolate_checkpoint_time(measured["save_gb_s"], measured["load_gb_s"])
    return {**measured, "params_671b": ext["params"], "bytes_671b": ext["bytes"],
            "extrapolated_671b_save_s": ext["extrapolated_save_s"], "extrapolated_671b_load_s": ext["extrapolated_load_s"]}


def sharded_checkpoint_io(state: dict[str, np.ndarray], n_shards: int, directory: str | os.PathLike,
                          repeats: int = 3) -> dict[str, float]:
    """Measured throughput of ``tf_impl.parallel.sharded_checkpoint``'s parallel writer and reader on this host.

    ``state`` is cut into ``n_shards`` shards of near-equal bytes (one per rank); each repeat writes them
    at once (one thread per shard, fsync, SHA-256, atomic publish) and reads them back verified. The
    best repeat is kept (the least disturbed by other processes on a shared host).

    Returns:
        ``{"bytes", "save_gb_s", "load_gb_s"}``: this host's aggregate throughput with ``n_shards`` writers.
    """
    from tf_impl.parallel.sharded_checkpoint import read_shards, write_shards

    shards: list[dict[str, np.ndarray]] = [{} for _ in range(n_shards)]
    sizes = [0] * n_shards
    for name, arr in sorted(state.items(), key=lambda kv: -kv[1].nbytes):
        r = sizes.index(min(sizes))                        # largest first onto the lightest shard
        shards[r][name] = arr
        sizes[r] += arr.nbytes
    save, load, nbytes = [], [], 0
    for i in range(repeats):
        path = os.path.join(os.fspath(directory), f"sharded-{i}")
        written = write_shards(path, shards, {"shards": n_shards})
        nbytes = written["bytes"]
        save.append(nbytes / written["seconds"] / 1e9)
        t0 = time.perf_counter()
        read_shards(path)
        load.append(nbytes / (time.perf_counter() - t0) / 1e9)
    return {"bytes": float(nbytes), "save_gb_s": max(save), "load_gb_s": max(load)}


def sharded_checkpoint_time(save_gb_s: float, load_gb_s: float, hosts: int, cfg: ModelConfig | None = None,
                            bytes_per_param: float = 12) -> dict[str, float]:
    """EXTRAPOLATION: save/load seconds of a ``cfg`` checkpoint when ``hosts`` hosts each write their share
    in parallel at the per-host throughput measured here (``sharded_checkpoint_io``): bytes / (hosts * rate).

    Assumes every host has its own disk (or a parallel file system scaling with hosts) and writes at
    this host's measured rate; the shards are equal. ``hosts=1`` gives the one-host figure.
    """
    one = extrapolate_checkpoint_time(save_gb_s * hosts, load_gb_s * hosts, cfg, bytes_per_param)
    return {**one, "hosts": float(hosts)}
