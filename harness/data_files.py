"""Reading the project's TOML files (tasks, knowledge base, test groups, pyproject) with errors that name the file
and the problem."""

from __future__ import annotations

import os
import tomllib
from typing import Any


def read_toml(path: str | os.PathLike, error: type[Exception], what: str) -> dict[str, Any]:
    """The parsed TOML at ``path``; a missing, unreadable or malformed file raises ``error`` naming ``what``
    and ``path``.

    Args:
        path: the file.
        error: the exception class to raise (the caller's own, e.g. TasksError).
        what: how the message calls the file ("tasks file", "knowledge base").

    Returns:
        the TOML document as a dict.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"{what} {os.fspath(path)} does not exist") from None
    except OSError as e:
        raise error(f"cannot read {what} {os.fspath(path)}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{what} {os.fspath(path)} is not valid TOML: {e}") from None
