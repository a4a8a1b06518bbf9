"""An asv environment plugin: the running interpreter, keyed by its Python version instead of its path.

asv's own ``existing`` environment names its results after the interpreter's absolute path
(``existing-py_tmp_ci2_.venv_bin_python``) and records that path as the graph parameter ``python``, so
every checkout folder, venv location and CI runner starts a new line in the HTML history, and
``asv compare`` between commits recorded from two folders finds nothing to compare. This environment
behaves exactly like ``existing`` (it runs in the given interpreter and never builds), but its identity is
``existing-stable-py<major>.<minor>`` with ``python`` = ``<major>.<minor>``: the same string asv's
virtualenv environments record, so ``--range`` runs continue the same lines. Which hosts count as the same
is declared by the asv machine name (``--machine``), as before.

asv loads this module through ``"plugins": [".harness.reports.asv_env"]`` in ``asv.conf.json``; select it with
``asv run -E existing-stable:same`` (or ``existing-stable:/path/to/python``).
"""

from __future__ import annotations

from asv.environment import ExistingEnvironment, get_env_name

TOOL_NAME = "existing-stable"


def stable_env_name(python_version: str) -> str:
    """The results key (``env_name``) of the stable environment for ``python_version`` (``"3.11"``)."""
    return get_env_name(TOOL_NAME, python_version, {}, {})


class StableExistingEnvironment(ExistingEnvironment):
    """asv's ``existing`` environment with a path-free name and ``python`` parameter (see the module docstring)."""

    tool_name = TOOL_NAME

    @classmethod
    def matches(cls, python: str) -> bool:
        """Never chosen by interpreter auto-detection: only by name (``-E existing-stable:...``)."""
        return False

    @property
    def version(self) -> str:
        """The interpreter's ``X.Y``, asked once (asv's Environment.__init__ already needs ``name``)."""
        if not hasattr(self, "_stable_version"):
            from asv import util
            self._stable_version = util.check_output(
                [self._executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).strip()
        return self._stable_version

    @property
    def python(self) -> str:
        """The graph parameter ``python``: ``X.Y`` (asv's ``existing`` gives the executable's path)."""
        return self.version

    @property
    def name(self) -> str:
        """``existing-stable-pyX.Y``: no path, so every folder and venv of the same Python shares it."""
        return get_env_name(self.tool_name, self.version, {}, self._tagged_env_vars)
