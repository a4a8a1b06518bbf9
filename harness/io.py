"""Safetensors save/load of the canonical state, with errors that name the file and the problem."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or otherwise unreadable."""


def save_safetensors(state: Mapping[str, np.ndarray], path: str | os.PathLike, overwrite: bool = False) -> None:
    """Write ``state`` atomically (temp file, then rename). Refuses to replace a file unless ``overwrite``."""
    from safetensors.numpy import save_file

    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in state.items()}
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        save_file(arrays, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a safetensors file into ``{name: np.ndarray}``; a missing or corrupt file gets CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a directory, expected a .safetensors file")
    try:
        return dict(load_file(path))
    except (SafetensorError, OSError, ValueError, OverflowError) as e:
        size = os.path.getsize(path)
        raise CheckpointError(f"checkpoint {path} ({size} bytes) is truncated or corrupt: {e}") from None
