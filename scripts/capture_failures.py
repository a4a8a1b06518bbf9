"""Provoke each known failure for real and keep its output as a fixture for the troubleshooter.

Every scenario (``failure_scenarios.py``, ``held_out_scenarios.py``) is a small Python program run in
its own subprocess, bounded by a timeout and, where the failure is an allocation, by RLIMIT_AS or by
asking for an absurd tensor that the allocator refuses at once. Its combined stdout/stderr, trimmed
to the tail and with machine paths replaced by ``<repo>``/``<tmp>``, becomes
``tests/qa/fixtures/<name>.log``. ``MANIFEST.json`` records per scenario the issue it must be
diagnosed as, its set (``dev`` or ``held_out``), the host kind it ran on, its exit status and commit,
and per host kind the environment (library versions, machine) of the latest capture there. For a
held-out scenario it also records the knowledge base's sha256 and the issue ranked first at capture
(the protocol: ``tests/qa/fixtures/README.md``).

    .venv/bin/python scripts/capture_failures.py                  # every cpu scenario (several minutes)
    .venv/bin/python scripts/capture_failures.py --only tf_oom jax_oom
    .venv/bin/python scripts/capture_failures.py --host gpu       # on a CUDA machine: the gpu scenarios
    .venv/bin/python scripts/capture_failures.py --list

Every scenario must fail (non-zero exit; a ``warning_only`` one must print its warning and exit 0);
one that does not is reported, left out of the manifest, and the script exits 1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from failure_scenarios import SCENARIOS as DEV_SCENARIOS, Scenario  # noqa: E402 (beside this script)
from held_out_scenarios import SCENARIOS as HELD_OUT_SCENARIOS  # noqa: E402
from harness.qa.diagnosis import diagnose_text  # noqa: E402 (needs the repo on the path when run as a script)
from harness.qa.knowledge import KNOWLEDGE_BASE_PATH  # noqa: E402
from harness.qa.troubleshoot import environment_info  # noqa: E402

FIXTURES = os.path.join(REPO, "tests", "qa", "fixtures")
SCENARIOS: tuple[Scenario, ...] = (*DEV_SCENARIOS, *HELD_OUT_SCENARIOS)
TAIL_LINES = 45
TAIL_CHARS = 4000


def _limits(address_space_gib: float | None):
    def apply() -> None:
        if address_space_gib is not None:
            limit = int(address_space_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def _trim(text: str, tmpdir: str) -> str:
    text = text.replace(tmpdir, "<tmp>").replace(REPO, "<repo>")
    lines = text.rstrip("\n").splitlines()[-TAIL_LINES:]
    while len("\n".join(lines)) > TAIL_CHARS and len(lines) > 1:
        lines.pop(0)
    return "\n".join(lines) + "\n"


def run_scenario(scenario: Scenario) -> tuple[int, str]:
    """Run one scenario in a subprocess; returns (exit status, trimmed combined output)."""
    with tempfile.TemporaryDirectory(prefix="capture-") as tmpdir:
        script = os.path.join(tmpdir, f"{scenario.name}.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent(scenario.code).lstrip())
        env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "", **scenario.env}
        env = {k: v for k, v in env.items() if v is not None}
        try:
            proc = subprocess.run([sys.executable, script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=scenario.timeout_s,
                                  preexec_fn=_limits(scenario.address_space_gib))
            return proc.returncode, _trim(proc.stdout, tmpdir)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return 124, _trim(out + f"\n[capture: timed out after {scenario.timeout_s}s]", tmpdir)


def knowledge_base_sha256() -> str:
    """sha256 of ``harness/qa/knowledge_base.toml``: which knowledge base a held-out capture was scored against."""
    with open(KNOWLEDGE_BASE_PATH, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def manifest_entry(scenario: Scenario, rc: int, text: str, commit: str) -> dict:
    """The MANIFEST.json record of one capture; a held-out one also freezes what the diagnosis said then."""
    entry = {"expect": scenario.expect, "what": scenario.what, "set": scenario.set, "host": scenario.host,
             "exit_status": rc, "commit": commit}
    if scenario.warning_only:
        entry["warning_only"] = True
    if scenario.set == "held_out":
        ranked = diagnose_text(text)
        entry["kb_sha256"] = knowledge_base_sha256()
        entry["top_at_capture"] = ranked[0].issue.id if ranked else None
    return entry


_REMOTE_RUNNER = """
import json, os, platform, subprocess, sys, textwrap, importlib.metadata as md
out = sys.argv[1]
for name, code, env, timeout in SCENARIOS:
    path = os.path.join(out, name + ".py")
    with open(path, "w") as f:
        f.write(textwrap.dedent(code).lstrip())
    full = {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "", **env}
    full = {k: v for k, v in full.items() if v is not None}
    try:
        p = subprocess.run([sys.executable, path], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        rc, text = p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, text = 124, (e.stdout or b"").decode(errors="replace") + "[capture: timed out]"
    with open(os.path.join(out, name + ".out"), "w") as f:
        f.write(text.replace(out, "<tmp>"))
    with open(os.path.join(out, name + ".rc"), "w") as f:
        f.write(str(rc))
    os.remove(path)
info = {"python": platform.python_version(), "platform": platform.platform()}
for pkg in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "numpy", "nvidia-cudnn-cu13"):
    try:
        info[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
        pass
info["device"] = platform.machine() + " CPU, " + str(os.cpu_count()) + " cores"
try:
    info["accelerators"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
except OSError as e:
    info["accelerators"] = "nvidia-smi failed: " + str(e)
with open(os.path.join(out, "environment.json"), "w") as f:
    json.dump(info, f, indent=2)
"""


def remote_runner(scenarios: list[Scenario]) -> str:
    """A self-contained Python program that runs ``scenarios`` on a machine without this checkout.

    It writes ``<name>.out``, ``<name>.rc`` and ``environment.json`` into the folder given as its first
    argument; ``--from-raw`` turns that folder into fixtures. This is how the ``gpu`` scenarios are
    captured on a lent GPU machine whose copy of the repository is another branch.
    """
    table = [(s.name, s.code, s.env, s.timeout_s) for s in scenarios]
    return f"SCENARIOS = {table!r}\n" + _REMOTE_RUNNER


def import_raw(raw_dir: str, chosen: list[Scenario], commit: str) -> tuple[dict, dict]:
    """Read a remote runner's folder: (environment, {name: (exit status, trimmed text)})."""
    with open(os.path.join(raw_dir, "environment.json")) as f:
        environment = {**json.load(f), "commit": commit, "captured_by": "scripts/capture_failures.py remote runner"}
    runs = {}
    for s in chosen:
        with open(os.path.join(raw_dir, f"{s.name}.rc")) as f:
            rc = int(f.read().strip())
        with open(os.path.join(raw_dir, f"{s.name}.out"), errors="replace") as f:
            runs[s.name] = (rc, _trim(f.read(), "<tmp>"))
    return environment, runs


def main(argv: list[str] | None = None) -> int:
    """Capture the selected scenarios into fixtures; exit 1 when a scenario failed to fail."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="scenarios to run (default: all of --host)")
    parser.add_argument("--host", choices=("cpu", "gpu"), default="cpu", help="run the scenarios of this host kind")
    parser.add_argument("--set", choices=("dev", "held_out"), help="run only this set (default: both)")
    parser.add_argument("--out", default=FIXTURES, help="fixture directory (default tests/qa/fixtures)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--jobs", type=int, default=2, help="scenarios run at once (default 2)")
    parser.add_argument("--remote-script", metavar="PY", help="write a self-contained runner of the chosen scenarios "
                        "to PY (run it elsewhere as: python3 PY OUTDIR) and exit")
    parser.add_argument("--from-raw", metavar="DIR", help="record the chosen scenarios from a remote runner's OUTDIR "
                        "instead of running them here")
    args = parser.parse_args(argv)
    by_name = {s.name: s for s in SCENARIOS}
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:28s} {s.set:8s} {s.host:3s} -> {s.expect or '(no match)':22s} {s.what}")
        return 0
    unknown = sorted(set(args.only or ()) - set(by_name))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {sorted(by_name)}")
    if args.only:
        chosen = [by_name[n] for n in args.only]
    else:
        chosen = [s for s in SCENARIOS if s.host == args.host and args.set in (None, s.set)]
    if args.remote_script:
        with open(args.remote_script, "w") as f:
            f.write(remote_runner(chosen))
        print(f"wrote {args.remote_script} ({len(chosen)} scenarios)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "MANIFEST.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    scenarios = manifest.get("scenarios", {})
    environments = manifest.get("environments", {})
    environment = environment_info()
    if args.from_raw:
        environment, raw = import_raw(args.from_raw, chosen, environment["commit"])
        results = [raw[s.name] for s in chosen]
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(run_scenario, chosen))
    bad = []
    for scenario, (rc, text) in zip(chosen, results):
        failed = rc not in (0, 124) or (scenario.warning_only and rc == 0)
        status = "ok" if failed else "DID NOT FAIL" if rc == 0 else "TIMED OUT"
        print(f"{scenario.name:28s} exit {rc:4d}  {len(text):5d} chars  {status}", flush=True)
        if status != "ok":
            bad.append(scenario.name)
            continue
        with open(os.path.join(args.out, f"{scenario.name}.log"), "w") as f:
            f.write(text)
        scenarios[scenario.name] = manifest_entry(scenario, rc, text, environment["commit"])
        environments[scenario.host] = environment
    with open(manifest_path, "w") as f:
        json.dump({"environments": dict(sorted(environments.items())), "scenarios": dict(sorted(scenarios.items()))},
                  f, indent=2)
        f.write("\n")
    if bad:
        print(f"scenarios that did not fail as intended (not recorded): {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
