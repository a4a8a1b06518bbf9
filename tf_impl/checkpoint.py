"""Training checkpoints: canonical model state + optimizer slots + step + run metadata, verified on load.

One checkpoint is a directory ``<root>/step_<step:08d>/`` holding

- ``model.safetensors``: the canonical state (``model.state_dict()``, gate biases included);
- ``optimizer.safetensors``: the optimizer slots (e.g. ``m.<name>``, ``v.<name>``, ``count``);
- ``manifest.json``: step, free JSON metadata (data position, rng, configs), and for every file its
  byte size and SHA-256; the manifest also carries the SHA-256 of its own other fields.

Writes are atomic: everything goes to a hidden temporary directory, each file is fsync'ed, the
directory is renamed into place and the parent is fsync'ed, so a crash leaves either the whole
checkpoint or none of it. The manifest is written last, so a directory without one is partial.
Loading re-hashes every file; a missing, truncated or altered file raises CorruptCheckpointError
naming the file and the fix, and ``CheckpointManager.latest_good()`` falls back to the newest
checkpoint that verifies.

Nothing is lost to a crash or a bad run (``tf_impl.checkpoint_recovery`` has the crash half):

- opening a ``CheckpointManager`` finishes or undoes an ``overwrite=True`` save that a crash
  interrupted, and deletes the work folders of dead writers;
- pruning happens only after the new checkpoint verifies, and counts only checkpoints whose files
  verify and whose manifest does not mark them unhealthy (``meta["health"]["healthy"] is False``:
  the trainer's verdict on the steps that produced them), so a run of corrupt or diverged saves can
  never push out the last ``keep`` good ones; corrupt checkpoints are never deleted by pruning;
- a save onto the step of a corrupt checkpoint sets the corrupt one aside as
  ``step_<n>.corrupt-<k>`` instead of refusing or overwriting it; a good one is never replaced
  unless asked with ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from harness.io import CheckpointError
from tf_impl.checkpoint_recovery import fsync_dir, pause_point, recover_and_warn, work_prefix

FORMAT = "deepseek-v3-train-checkpoint"
# Version 2: optimizer moments follow the variables' storage, which became [I, O] for linear and expert
# weights (tf_impl/linear.py); a version-1 file's moments are [O, I], wrong (and for square weights
# silently so) under this code. The canonical model state did not change.
VERSION = 2
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
MANIFEST_FILE = "manifest.json"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


class CorruptCheckpointError(CheckpointError):
    """A checkpoint that is partial (no manifest), truncated, or whose bytes do not match its hashes."""


@dataclass
class Checkpoint:
    """A loaded, verified checkpoint."""

    path: str
    step: int
    model_state: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return _sha256(json.dumps(body, sort_keys=True).encode())


def _write_synced(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _to_bytes(arrays: Mapping[str, Any]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(np.asarray(v)) for k, v in arrays.items()})


def save_checkpoint(
    path: str | os.PathLike,
    model_state: Mapping[str, Any],
    optimizer_state: Mapping[str, Any] | None = None,
    *,
    step: int = 0,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write one checkpoint directory at ``path`` atomically.

    Everything is written and fsynced into a temporary sibling directory, the manifest (with each
    file's SHA-256) last, and only then renamed into place, so a crash leaves either the old
    checkpoint or a directory without a manifest that ``read_manifest`` rejects as partial.
    Refuses (FileExistsError) when ``path`` exists, unless ``overwrite``; then the old checkpoint is
    replaced only after the new one is complete on disk.

    Args:
        path: the checkpoint directory to create; its parent is created if needed.
        model_state: ``{canonical name: array}`` of the weights.
        optimizer_state: ``{name: array}`` of the optimizer slots; None writes an empty file.
        step: the training step recorded in the manifest.
        meta: JSON-serialisable extras recorded in the manifest (config, data position, ...).
        overwrite: replace an existing checkpoint at ``path`` instead of refusing.

    Returns:
        the absolute path written.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it, or save to another path")
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=work_prefix("tmp", name), dir=parent)
    try:
        manifest: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "step": int(step), "created_unix": time.time(),
            "meta": dict(meta or {}), "files": {},
        }
        for fname, arrays in ((MODEL_FILE, model_state), (OPTIMIZER_FILE, optimizer_state or {})):
            data = _to_bytes(arrays)
            _write_synced(os.path.join(tmp, fname), data)
            pause_point("tmp-file-written")
            scalars = sorted(k for k, v in arrays.items() if np.ndim(v) == 0)  # safetensors stores them as [1]
            manifest["files"][fname] = {"bytes": len(data), "sha256": _sha256(data), "tensors": len(arrays),
                                        "scalars": scalars}
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        _write_synced(os.path.join(tmp, MANIFEST_FILE), json.dumps(manifest, indent=1, sort_keys=True).encode())
        fsync_dir(tmp)
        pause_point("tmp-complete")
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=work_prefix("old", name), dir=parent)
            os.rename(path, os.path.join(old, "ckpt"))
            pause_point("old-moved")
            os.rename(tmp, path)
            pause_point("new-moved")
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
        fsync_dir(parent)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return path


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The verified manifest of the checkpoint at ``path`` (files are not hashed here).

    Cheap enough to call on every checkpoint when pruning; ``load_checkpoint`` hashes the files.

    Args:
        path: a checkpoint directory written by ``save_checkpoint``.

    Returns:
        the manifest dict: format, version, step, created_unix, meta and per-file bytes/sha256.
        A missing, unparsable or altered manifest raises CorruptCheckpointError; another format
        version raises CheckpointError.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} does not exist (expected a directory holding {MANIFEST_FILE})")
    mpath = os.path.join(path, MANIFEST_FILE)
    if not os.path.exists(mpath):
        raise CorruptCheckpointError(
            f"checkpoint {path} is partial: it has no {MANIFEST_FILE} (the write did not finish); "
            "delete it and resume from the previous good checkpoint (CheckpointManager.latest_good())"
        )
    try:
        with open(mpath, "rb") as f:
            manifest = json.loads(f.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptCheckpointError(f"checkpoint {path}: {MANIFEST_FILE} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptCheckpointError(f"checkpoint {path}: {MANIFEST_FILE} is not a {FORMAT} manifest")
    if manifest.get("manifest_sha256") != _manifest_digest(manifest):
        raise CorruptCheckpointError(f"checkpoint {path}: {MANIFEST_FILE} was altered (its SHA-256 does not match)")
    if manifest.get("version") != VERSION:
        hint = ""
        if manifest.get("version") == 1:
            hint = (f" (version 1 stored optimizer moments in the old [O, I] weight layout; its model weights are "
                    f"still valid: load {MODEL_FILE} with safetensors.numpy.load_file and model.load_state_dict, "
                    "and start the optimizer afresh)")
        raise CheckpointError(f"checkpoint {path} has format version {manifest.get('version')}; "
                              f"this code reads {VERSION}{hint}")
    return manifest


def _read_verified(path: str, name: str, entry: Mapping[str, Any]) -> bytes:
    """The bytes of file ``name`` of checkpoint ``path``, after checking its size and SHA-256 against ``entry``."""
    fpath = os.path.join(path, name)
    if not os.path.exists(fpath):
        raise CorruptCheckpointError(f"checkpoint {path} is missing {name}; resume from the previous good checkpoint")
    with open(fpath, "rb") as f:
        data = f.read()
    if len(data) != entry["bytes"]:
        raise CorruptCheckpointError(
            f"checkpoint {path}: {name} has {len(data)} bytes, the manifest says {entry['bytes']} (truncated?)"
        )
    if _sha256(data) != entry["sha256"]:
        raise CorruptCheckpointError(f"checkpoint {path}: {name} does not match its SHA-256 in the manifest (corrupt)")
    return data


def _verified_manifest(path: str) -> dict[str, Any]:
    manifest = read_manifest(path)
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        if name not in manifest["files"]:
            raise CorruptCheckpointError(f"checkpoint {path}: the manifest lists no {name}")
    return manifest


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check every file of the checkpoint at ``path`` against its manifest without parsing tensors.

    Returns:
        the manifest; any mismatch raises CorruptCheckpointError (CheckpointError if it does not exist).
    """
    path = os.fspath(path)
    manifest = _verified_manifest(path)
    for name, entry in manifest["files"].items():
        _read_verified(path, name, entry)
    return manifest


def _verifies(path: str) -> bool:
    try:
        verify_checkpoint(path)
        return True
    except CheckpointError:
        return False


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify the checkpoint at ``path``; raises CorruptCheckpointError on any mismatch.

    Args:
        path: the checkpoint folder (its manifest lists every file with its sha256).

    Returns:
        the Checkpoint: step, model and optimizer states (float32 numpy, canonical names) and the saved meta.
    """
    from safetensors.numpy import load

    path = os.fspath(path)
    manifest = _verified_manifest(path)
    states = {}
    for name, entry in manifest["files"].items():
        arrays = dict(load(_read_verified(path, name, entry)))
        for k in entry.get("scalars", []):
            arrays[k] = arrays[k].reshape(())
        states[name] = arrays
    return Checkpoint(path, int(manifest["step"]), states[MODEL_FILE], states[OPTIMIZER_FILE], manifest["meta"])


class CheckpointManager:
    """Numbered checkpoints under one directory, keeping the newest ``keep`` good ones (see the module docstring).

    Opening one recovers the directory from an interrupted save (``tf_impl.checkpoint_recovery``).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep={keep} must be >= 1 (the previous good checkpoint must survive)")
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise CheckpointError(f"checkpoint directory {self.directory} is a file; choose a directory path")
        self.keep = keep
        self._verified: dict[str, dict[str, Any]] = {}  # path -> manifest, for files already hashed unchanged
        recover_and_warn(self.directory, _verifies)

    def path_for(self, step: int) -> str:
        """The directory of checkpoint ``step``: ``step_<8 digits>``, so names sort by step."""
        return os.path.join(self.directory, f"step_{step:08d}")

    def steps(self) -> list[int]:
        """Steps of every checkpoint directory present (good or not), ascending."""
        if not os.path.isdir(self.directory):
            return []
        found = (_STEP_DIR.match(n) for n in os.listdir(self.directory))
        return sorted(int(m.group(1)) for m in found if m)

    def save(
        self,
        step: int,
        model_state: Mapping[str, Any],
        optimizer_state: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> str:
        """Write checkpoint ``step``, verify it, then prune (see ``_prune``).

        A corrupt checkpoint already at ``step`` (one that ``latest_good`` skipped) is set aside as
        ``step_<n>.corrupt-<k>``, with a warning, rather than refused or overwritten: a resumed run
        must be able to continue past it, and its bytes stay for inspection. A good one is replaced
        only with ``overwrite=True``.

        Args:
            step: the training step; names the directory (see ``path_for``).
            model_state: ``{canonical name: array}`` of the weights.
            optimizer_state: ``{name: array}`` of the optimizer slots, or None.
            meta: JSON-serialisable extras for the manifest; ``meta["health"]["healthy"] = False``
                keeps this checkpoint from counting towards ``keep``.
            overwrite: replace an existing good checkpoint of the same step.

        Returns:
            the path of the checkpoint written.
        """
        path = self.path_for(step)
        if os.path.exists(path) and not overwrite and not _verifies(path):
            self._set_aside(path)
        path = save_checkpoint(path, model_state, optimizer_state, step=step, meta=meta, overwrite=overwrite)
        self._verified.pop(path, None)
        if self._manifest_if_good(path) is None:
            warnings.warn(f"checkpoint {path} does not verify right after it was written (disk error?); "
                          "nothing was pruned", stacklevel=2)
            return path
        self._prune()
        return path

    def _set_aside(self, path: str) -> str:
        k = 1
        while os.path.exists(f"{path}.corrupt-{k}"):
            k += 1
        aside = f"{path}.corrupt-{k}"
        os.rename(path, aside)
        fsync_dir(self.directory)
        warnings.warn(f"checkpoint {path} is corrupt or partial; set aside as {os.path.basename(aside)} "
                      "(kept for inspection, delete it when done) to save a new one at its step", stacklevel=3)
        return aside

    def _manifest_if_good(self, path: str) -> dict[str, Any] | None:
        """The manifest of ``path`` if all its files verify (cached while they are unchanged), else None."""
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
            stamp = tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
        except OSError:
            return None
        cached = self._verified.get(path)
        if cached is not None and cached["stamp"] == stamp:
            return cached["manifest"]
        try:
            manifest = verify_checkpoint(path)
        except CheckpointError:
            return None
        self._verified[path] = {"stamp": stamp, "manifest": manifest}
        return manifest

    def _prune(self) -> None:
        """Delete verified checkpoints older than the newest ``keep`` verified and healthy ones.

        Newest first, each checkpoint's files are hashed (cached while unchanged) until ``keep`` good
        ones are found. Corrupt checkpoints are never counted and never deleted; checkpoints marked
        unhealthy are not counted. A deletion renames the checkpoint to a ``.del-*`` work folder first,
        so a crash mid-deletion never leaves a half-deleted checkpoint listed.
        """
        good, doomed, corrupt = 0, [], []
        for step in reversed(self.steps()):
            manifest = self._manifest_if_good(self.path_for(step))
            if manifest is None:
                corrupt.append(os.path.basename(self.path_for(step)))
                continue
            if good >= self.keep:
                doomed.append(step)
            elif manifest["meta"].get("health", {}).get("healthy", True) is not False:
                good += 1
        if corrupt:
            warnings.warn(f"checkpoint(s) {', '.join(corrupt)} in {self.directory} do(es) not verify; not counted "
                          f"towards keep={self.keep}, not deleted (inspect or delete them yourself)", stacklevel=3)
        for step in doomed:
            path = self.path_for(step)
            trash = tempfile.mkdtemp(prefix=work_prefix("del", os.path.basename(path)), dir=self.directory)
            os.rename(path, os.path.join(trash, "ckpt"))
            self._verified.pop(path, None)
            pause_point("prune-moved")
            shutil.rmtree(trash)
        if doomed:
            fsync_dir(self.directory)

    def load(self, step: int) -> Checkpoint:
        """Read and verify checkpoint ``step``; raises CheckpointError (or its Corrupt subclass) if it is bad."""
        return load_checkpoint(self.path_for(step))

    def latest_good(self) -> Checkpoint | None:
        """The newest checkpoint that verifies, warning about each newer one that does not; None if none."""
        recover_and_warn(self.directory, _verifies)
        for step in reversed(self.steps()):
            try:
                return self.load(step)
            except CheckpointError as e:
                warnings.warn(f"skipping bad checkpoint: {e}", stacklevel=2)
        return None
