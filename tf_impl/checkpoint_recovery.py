"""Crash safety of checkpoint directories: who owns a hidden work folder, and finishing what a dead writer left.

Every multi-step change to a checkpoint directory goes through hidden sibling folders named
``.<kind>-<name>-<host>-<pid>-<start>-<random>``:

- ``.tmp-*``: a checkpoint being written (renamed to ``<name>`` when complete);
- ``.old-*``: the previous checkpoint moved out of the way by an ``overwrite=True`` save (its
  content is in ``ckpt/`` inside); the swap is ``<name>`` -> ``.old-*/ckpt``, then ``.tmp-*`` ->
  ``<name>``, then the ``.old-*`` folder is deleted;
- ``.del-*``: a pruned checkpoint, renamed first so that a half-deleted one is never listed.

``host``, ``pid`` and ``start`` (the process start time in clock ticks, from ``/proc``) identify the
writer. A folder is only touched by ``recover`` when its writer is known dead: same host, and no
process with that pid and start time exists. A reused pid has another start time, so a restarted
container whose trainer is again pid 1 still recovers; a folder of another host is left alone.
``recover`` then finishes or undoes the interrupted step (see its docstring), and every step of
recovery is itself a single rename or a deletion of a dead folder, so a crash during recovery is
recovered by the next open.

Fault injection for tests: with ``TF_IMPL_CHECKPOINT_PAUSE_AT=<point>`` in the environment, the writer
prints ``paused at <point>`` to stdout and sleeps at that point, so a test can ``kill -9`` it there
(points: ``tmp-file-written``, ``tmp-complete``, ``old-moved``, ``new-moved``, ``prune-moved``, and
``recover-swapped`` inside ``recover``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import time
import warnings
from typing import Callable

PAUSE_ENV = "TF_IMPL_CHECKPOINT_PAUSE_AT"
_WORK_DIR = re.compile(
    r"^\.(?P<kind>tmp|old|del)-(?P<name>.+)-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-(?P<start>\d+)-[a-z0-9_]+$"
)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``); None if it does not exist.

    0 where ``/proc`` is unavailable but the process exists (liveness then rests on the pid alone).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22; the name in (...) may hold spaces
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0


def writer_tag() -> str:
    """``<host>-<pid>-<start>`` of this process: the owner part of the work folders it creates."""
    pid = os.getpid()
    return f"{_host()}-{pid}-{_start_time(pid) or 0}"


def work_prefix(kind: str, name: str) -> str:
    """The ``tempfile.mkdtemp`` prefix of a ``kind`` (tmp, old, del) work folder for checkpoint ``name``.

    Args:
        kind: ``"tmp"`` (a save in progress), ``"old"`` (a replaced checkpoint) or ``"del"`` (being deleted).
        name: the checkpoint's folder name.

    Returns:
        ``.<kind>-<name>-<host>-<pid>-<start>-``: the owner part lets ``recover`` tell a live writer's
        folders from a crashed one's.
    """
    return f".{kind}-{name}-{writer_tag()}-"


def _writer_alive(host: str, pid: int, start: int) -> bool:
    if host != _host():
        return True  # another machine's writer: its liveness is unknowable here, so never touch its folders
    now = _start_time(pid)
    return now is not None and (start == 0 or now == 0 or now == start)


def pause_point(point: str) -> None:
    """Test hook: sleep at ``point`` when ``TF_IMPL_CHECKPOINT_PAUSE_AT`` names it, so a test can kill -9 here."""
    if os.environ.get(PAUSE_ENV) == point:
        print(f"paused at {point}", flush=True)
        sys.stdout.flush()
        time.sleep(3600)


def _dead_work_dirs(directory: str) -> list[tuple[str, str, str]]:
    """``(kind, name, folder path)`` of every work folder in ``directory`` whose writer is dead."""
    out = []
    for entry in sorted(os.listdir(directory)):
        m = _WORK_DIR.match(entry)
        if m and not _writer_alive(m["host"], int(m["pid"]), int(m["start"])):
            out.append((m["kind"], m["name"], os.path.join(directory, entry)))
    return out


def recover(directory: str, verifies: Callable[[str], bool]) -> list[str]:
    """Finish or undo what dead writers left in ``directory``; returns one line per action taken.

    - ``.old-<name>-*`` and ``<name>`` exists: the swap finished; the old copy is deleted.
    - ``.old-<name>-*`` and ``<name>`` is missing (killed between the two renames): if the same
      writer's ``.tmp-<name>-*`` holds a complete checkpoint that ``verifies``, the swap is finished
      (the caller asked for the new one); otherwise the old checkpoint is restored.
    - any other ``.tmp-*`` (a save that never committed) and ``.del-*`` (a pruned checkpoint) of a
      dead writer is deleted.

    Folders of live writers, of other hosts, and everything not named like a work folder are left alone.

    Args:
        directory: the folder holding checkpoint directories (missing: nothing to do).
        verifies: ``path -> bool``, True when the checkpoint at ``path`` is complete and its hashes match.

    Returns:
        a description of each action, for the caller's warning.
    """
    if not os.path.isdir(directory):
        return []
    actions = []
    dead = _dead_work_dirs(directory)
    for kind, name, old in dead:
        if kind != "old":
            continue
        target = os.path.join(directory, name)
        owner = os.path.basename(old)[len(f".old-{name}-"):].rsplit("-", 1)[0]
        if not os.path.exists(target):
            tmps = [p for k, n, p in dead if k == "tmp" and n == name
                    and os.path.basename(p).startswith(f".tmp-{name}-{owner}-") and verifies(p)]
            inner = os.path.join(old, "ckpt")
            if tmps:
                os.rename(tmps[-1], target)
                pause_point("recover-swapped")
                actions.append(f"finished the interrupted overwrite of {name} (the new checkpoint was complete)")
            elif os.path.isdir(inner):
                os.rename(inner, target)
                actions.append(f"restored {name} from an interrupted overwrite (the new checkpoint was incomplete)")
        shutil.rmtree(old, ignore_errors=True)
    for kind, name, path in dead:
        if kind in ("tmp", "del") and os.path.exists(path):
            shutil.rmtree(path, ignore_errors=True)
            actions.append(f"deleted {os.path.basename(path)} left by a dead writer")
    if actions:
        fsync_dir(directory)
    return actions


def fsync_dir(path: str) -> None:
    """fsync the directory ``path`` itself, so renames and deletions inside it reach the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover_and_warn(directory: str, verifies: Callable[[str], bool]) -> None:
    """``recover`` and one UserWarning listing what it did (silent when there was nothing to do).

    Args:
        directory: the checkpoint directory.
        verifies: True when the checkpoint folder at a path is complete and intact (e.g. its manifest checks).
    """
    actions = recover(directory, verifies)
    if actions:
        warnings.warn(f"checkpoint directory {directory}: recovered from a crash: " + "; ".join(actions), stacklevel=3)
