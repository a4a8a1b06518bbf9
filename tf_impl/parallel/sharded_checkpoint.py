"""Sharded checkpoints: every rank writes its own shard, in parallel; restore onto any mesh.

Each rank owns a slice of two flat vectors (``ExpertParallel.flat_layout``): REP, the replicated
tensors, split over all R ranks, and EXP, its expert shard's tensors, split over the data axis.
Rank r writes ``shard-r.safetensors`` with its slice of the weights and of the AdamW moments (exactly
its ZeRO-1 partition when ZeRO is on), all shards at once from a thread pool (one writer per rank, as
one process per host would on a cluster). Writes are atomic as in ``tf_impl.checkpoint``: everything
goes to a temporary directory, every file is fsynced and hashed (SHA-256 in the manifest), and one
rename publishes the checkpoint. Reading verifies every hash, joins the slices and names every tensor
canonically, so a checkpoint written on one mesh restores on another (8 -> 4 ranks, or one device).

TF's DTensor checkpointing (``tf.train.Checkpoint`` on DVariables) is not used because the model is not
laid out with DTensor (docs/distributed.md says why).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from harness.io import CheckpointError
from tf_impl.parallel.expert_parallel import ExpertParallel
from tf_impl.parallel.zero import split_flat

MANIFEST = "manifest.json"
FORMAT = "sharded-v1"


def _to_bytes(arrays) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()})


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _write_one(directory: str, name: str, arrays) -> dict:
    data = _to_bytes(arrays)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": _sha256(data)}


def write_shards(path: str, shards: list[dict[str, np.ndarray]], meta: dict, overwrite: bool = False) -> dict:
    """Write ``shards[r]`` as ``shard-r.safetensors`` in parallel, atomically, with a hashed manifest.

    Args:
        path: the checkpoint directory to create.
        shards: one {tensor name: array} per rank.
        meta: layout information stored in the manifest (what ``read_shards`` returns with the arrays).
        overwrite: replace an existing checkpoint at ``path`` (otherwise FileExistsError).

    Returns:
        ``{"bytes", "seconds", "files"}``: total bytes written and the wall time of the parallel write.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it, or choose another path")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".sharded-", dir=parent)
    try:
        start = time.perf_counter()
        names = [f"shard-{r:05d}.safetensors" for r in range(len(shards))]
        with ThreadPoolExecutor(max_workers=len(shards)) as pool:
            entries = list(pool.map(lambda item: _write_one(tmp, *item), zip(names, shards)))
        manifest = {"format": FORMAT, "meta": meta, "files": dict(zip(names, entries))}
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        seconds = time.perf_counter() - start
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"bytes": sum(e["bytes"] for e in entries), "seconds": seconds, "files": len(shards)}


def read_shards(path: str) -> tuple[list[dict[str, np.ndarray]], dict]:
    """Every shard of checkpoint ``path`` (hash-verified, read in parallel) and the manifest's meta.

    Args:
        path: the checkpoint folder written by ``write_shards``.

    Returns:
        ``(shards, meta)``: one ``{tensor name: array}`` per rank in file-name order, and the layout stored
        with them. A missing manifest, another format or a shard that fails its hash raises CheckpointError.
    """
    from safetensors.numpy import load

    path = os.fspath(path)
    mpath = os.path.join(path, MANIFEST)
    if not os.path.exists(mpath):
        raise CheckpointError(f"{path} is not a sharded checkpoint: {MANIFEST} is missing")
    with open(mpath) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")

    def read(item):
        name, entry = item
        with open(os.path.join(path, name), "rb") as f:
            data = f.read()
        if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
            raise CheckpointError(f"checkpoint {path}: {name} does not match its size/SHA-256 in the manifest "
                                  "(truncated or corrupt); restore an earlier checkpoint")
        return load(data)

    names = sorted(manifest["files"])
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        shards = list(pool.map(read, [(n, manifest["files"][n]) for n in names]))
    return shards, manifest["meta"]


def _slice(flat: np.ndarray, index: int, parts: int) -> np.ndarray:
    size = -(-flat.size // parts) if flat.size else 0
    flat = np.pad(flat, (0, size * parts - flat.size))
    return flat[index * size:(index + 1) * size]


def save_sharded(path: str, model: ExpertParallel, overwrite: bool = False) -> dict:
    """Save an ``ExpertParallel`` model: each rank its slice of weights and AdamW moments, in parallel.

    Args:
        path: the checkpoint folder to create.
        model: the model on its mesh; rank 0 also saves the update count and the gate biases.
        overwrite: replace an existing checkpoint at ``path`` (otherwise FileExistsError).

    Returns:
        ``write_shards``'s ``{"bytes", "seconds", "files"}``.
    """
    mesh = model.mesh
    shards = []
    for r in mesh.all_ranks:
        d, e = mesh.coords(r)
        out = {}
        for kind, opt, index, parts in (("rep", model.optimizers[r][0], r, mesh.size),
                                        ("exp", model.optimizers[r][1], d, mesh.dp)):
            flat = np.concatenate([v.numpy().reshape(-1) for v in opt.params]) if opt.params else np.zeros(0, np.float32)
            out[f"{kind}.param"] = _slice(flat, index, parts)
            for slot in ("m", "v"):
                value = getattr(opt, slot).numpy()
                out[f"{kind}.{slot}"] = value if opt.parts > 1 else _slice(value, index, parts)
        if r == 0:
            out["count"] = np.asarray(model.optimizers[0][0].count.numpy())
            for i, bias in enumerate(model.replicas[0].gate_biases()):
                out[f"bias.{i}"] = bias.numpy()
        shards.append(out)
    rep, exp = model.flat_layout()
    meta = {"data_parallel": mesh.dp, "expert_parallel": mesh.ep, "config": model.cfg.to_dict(),
            "rep": rep, "exp": exp, "biases": model.bias_names()}
    return write_shards(path, shards, meta, overwrite)


def load_sharded(path: str) -> dict:
    """A sharded checkpoint as canonical tensors: ``{"state", "m", "v", "count", "config"}``, mesh-independent.

    Args:
        path: the checkpoint folder written by ``save_sharded``.

    Returns:
        ``state``, ``m`` and ``v`` as ``{canonical name: array}`` (the state includes the gate biases), the
        update ``count`` and the model ``config`` as a dict, so a mesh of any shape can load it.
    """
    shards, meta = read_shards(path)
    dp, ep = meta["data_parallel"], meta["expert_parallel"]

    result = {"state": {}, "m": {}, "v": {}, "count": int(np.asarray(shards[0]["count"]).reshape(-1)[0]),
              "config": meta["config"]}
    for key, target in (("param", "state"), ("m", "m"), ("v", "v")):
        result[target].update(split_flat(np.concatenate([s[f"rep.{key}"] for s in shards]), meta["rep"]))
        for e in range(ep):
            ranks = [d * ep + e for d in range(dp)]
            result[target].update(split_flat(np.concatenate([shards[r][f"exp.{key}"] for r in ranks]), meta["exp"][e]))
    for i, name in enumerate(meta.get("biases", [])):
        result["state"][name] = shards[0][f"bias.{i}"]
    return result
