"""Safetensors save/load of the canonical state, and user-named output files; errors name the file and the problem."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or otherwise unreadable."""


def save_safetensors(state: Mapping[str, np.ndarray], path: str | os.PathLike, overwrite: bool = False) -> None:
    """Write ``state`` atomically (temp file, then rename). Refuses to replace a file unless ``overwrite``.

    Args:
        state: ``{tensor name: array}``; each array is written contiguous, in its own dtype.
        path: the ``.safetensors`` file to write.
        overwrite: replace an existing file; False raises FileExistsError instead, so nothing saved is lost.
    """
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
    """Read a safetensors file into ``{name: np.ndarray}``; a missing or corrupt file gets CheckpointError.

    Args:
        path: the ``.safetensors`` file.

    Returns:
        every tensor of the file by name, in its stored dtype.
    """
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


def write_output(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    """Write ``text`` to an output file the user named (a CLI's ``--out``), atomically.

    An existing file is the user's until they say otherwise: it is replaced only with ``force``
    (the CLIs' ``--force``), else FileExistsError names it and the fix. Missing parent directories
    are created. Every CLI that writes a user-named file goes through here, so they all behave alike.

    Args:
        path: the file to write.
        text: its new content.
        force: replace an existing file.

    Returns:
        the path written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file path")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it, or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
