"""``python -m harness ...``: run the asv suite, validate the roadmap, write the reports.

Commands:
  run          asv run for the current commit (or --range A..B), then validate, report, publish; exit 1 on regression
               (or when the run measured nothing); --full adds the full tier (benchmark classes named *Full)
  validate     verdicts for the latest (or --commit) results; exit 1 on FAIL, FAILED-TO-RUN, regression, or a
               commit with no measured value
  report       write report/roadmap.md and <html_dir>/roadmap.html from the recorded results
  publish      asv publish, made to work offline, plus the roadmap and criterion pages
  migrate      rewrite results recorded under a venv-path key to the stable key (lossless, keeps a backup)
  roadmap      print the roadmap: phases, deliverables, criteria and how each is measured
  equivalence  TF-vs-Flax checks (harness.interop.equivalence)
  diagnose     troubleshooting (harness.qa.troubleshoot)
  progress     progress tracker (harness.qa.progress)
  serve        export a SavedModel, serve it with Ray Serve, query it (harness.serve_cli)

Regressions are decided by harness.roadmap.gate against the previous recorded commit, or --baseline REF.

Exit codes: 0 fine, 1 criteria failed or regressed, nothing measured (or asv itself failed), 2 results unreadable /
bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Sequence

from harness import roadmap
from harness.io import write_output
from harness.reports import asv_env, markdown, migrate, pages, publish
from harness.roadmap import gate
from harness.roadmap.criteria import BINDINGS, check_bindings
from harness.roadmap.history import History, Paths, load_history, nothing_measured, paths_for
from harness.roadmap.results import ResultsError, ResultsWarning, load_machine
from harness.roadmap.validate import is_failing

DEFAULT_MACHINE = "harness-host"
ASV_SOME_BENCHMARKS_FAILED = 2  # `asv run` exits 2 when any benchmark failed; the verdicts say which


def _write_reports(paths: Paths, history: History, out: str | None, force: bool = False) -> None:
    """The markdown report (report/roadmap.md, the harness's own file, or ``out``: the user's, kept unless
    ``force``) and the HTML roadmap page."""
    if out:
        md = write_output(out, markdown.render(history), force=force)
    else:
        md = markdown.write_markdown(history, paths.root / "report" / "roadmap.md")
    page = pages.write_html(history, paths.html_dir)
    linked = (paths.html_dir / "index.html").exists()
    print(f"wrote {md} and {page}" + ("" if linked else " (no asv index.html yet: run `asv publish` to link it)"))


# ------------------------------------------------------------------ asv with stderr capture
def _failed(results, benchmark) -> bool:  # noqa: ANN001 (asv's Results and benchmark dict)
    """True when asv recorded the benchmark as raised: a non-zero exit or a null value (NaN = skipped is fine)."""
    if results.errcode.get(benchmark["name"]) not in (None, 0):
        return True
    values = results.get_result_value(benchmark["name"], benchmark["params"]) or [None]
    return any(v is None for v in values)


def _asv_with_stderr_capture(stderr_root: str, asv_argv: list[str]) -> None:
    """Run asv in this process, saving each benchmark's stderr (asv keeps it only in memory).

    The terminal shows a benchmark's stderr only when it failed (TensorFlow and JAX print their C++ start-up
    logs on every import, which would drown the progress lines); the sidecar keeps every benchmark's in full.
    """
    import asv.main
    import asv.runner

    original = asv.runner.log_benchmark_result

    def log_and_capture(results, benchmark, show_stderr=False):  # noqa: ANN001 (asv's own signature)
        original(results, benchmark, show_stderr=show_stderr and _failed(results, benchmark))
        if results.commit_hash is None:
            return
        path = Path(stderr_root) / results.params["machine"] / f"{results.commit_hash[:8]}-{results.env_name}.json"
        captured = json.loads(path.read_text()) if path.exists() else {}
        text = results.stderr.get(benchmark["name"])
        if text:
            captured[benchmark["name"]] = text
        else:
            captured.pop(benchmark["name"], None)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(captured, indent=1, sort_keys=True))

    asv.runner.log_benchmark_result = log_and_capture
    sys.argv = ["asv", *asv_argv]
    asv.main.main()


def _asv(paths: Paths, *argv: str, capture: bool = False) -> int:
    """Run asv as a child process, streaming its output to ours."""
    if capture:
        cmd = [sys.executable, "-m", "harness", "_asv", str(paths.results_dir.parent / "stderr"), *argv,
               "--config", str(paths.config)]
    else:
        cmd = [sys.executable, "-m", "asv", *argv, "--config", str(paths.config)]
    print("$ " + " ".join(cmd[2:] if not capture else ["asv", *argv]), flush=True)
    return subprocess.call(cmd, cwd=paths.root)


def _git(paths: Paths, *argv: str) -> str:
    return subprocess.check_output(["git", *argv], cwd=paths.root, text=True).strip()


# Benchmark classes whose name ends in "Full" form the full tier; `run` leaves them out unless --full.
# asv matches -b against "module.Class.method" (and "...method(param, ...)" per parameter combination).
_NOT_FULL_TIER = r"^(?!.*Full\.[A-Za-z_]\w*(?:\(|$))"


def bench_regex(selection: str | None, full: bool) -> str | None:
    """The asv ``-b`` regex of a run: ``selection`` (or everything), minus the full tier unless ``full``.

    Args:
        selection: the user's ``-b REGEX``, matched against ``module.Class.method``; None selects everything.
        full: include the full tier (classes whose name ends in ``Full``).

    Returns:
        the regex to pass as ``-b``; None when nothing is filtered (``full`` without a selection).
    """
    if full:
        return selection
    return _NOT_FULL_TIER if selection is None else f"{_NOT_FULL_TIER}(?=.*?(?:{selection}))"


def _commits_in_range(paths: Paths, spec: str) -> set[str]:
    """The commits of ``--range A..B``; ResultsError (exit 2) when git cannot resolve it."""
    proc = subprocess.run(["git", "rev-list", spec], cwd=paths.root, capture_output=True, text=True)
    if proc.returncode or ".." not in spec:
        said = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else "not of the form A..B"
        raise ResultsError(f"--range {spec!r} is not a commit range of {paths.root} ({said}); give two commits "
                           f"or refs as A..B, e.g. --range HEAD~3..HEAD")
    commits = set(proc.stdout.split())
    if not commits:
        raise ResultsError(f"--range {spec!r} holds no commits (is A an ancestor of B?); e.g. --range HEAD~3..HEAD")
    return commits


def _check_baseline_before_run(paths: Paths, machine: str, ref: str, to_run: set[str]) -> None:
    """Refuse a ``--baseline`` that will not be recorded after the run, before spending the run on it."""
    try:
        recorded = [c.commit_hash for c in load_machine(paths.results_dir, machine)]
    except ResultsError:
        recorded = []
    known = [*recorded, *sorted(to_run)]
    if re.fullmatch(r"[0-9a-fA-F]{4,40}", ref) and any(sha.startswith(ref.lower()) for sha in known):
        return
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=paths.root,
                          capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip() in known:
        return
    raise ResultsError(f"--baseline {ref!r} is not a recorded commit on {machine} nor one this run records; "
                       f"recorded: {', '.join(sha[:8] for sha in recorded) or 'none'}. Run it first, or pick one "
                       f"of those")


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: benchmark HEAD (or ``--range``), publish, write the reports, and flag regressions.

    Only regressions introduced by the commits just run fail the command, so an old regression already
    in the history does not block every later run; neither does a run that measured nothing go unnoticed.
    A borderline flip (``gate.within_the_noise``) is printed and does not fail the command.
    asv's "some benchmarks failed" exit is tolerated: the verdicts report those benchmarks as
    FAILED-TO-RUN. ``--record-samples`` keeps asv's samples for the regression gate's statistics.

    Args:
        args: the parsed ``run`` options (``--machine``, ``-b``, ``--range``, ``--quick``, ``--full``,
            ``--baseline``, ``--config``, ``--results-dir``).

    Returns:
        the exit code: 0 on success; 1 when asv failed, a regression appeared, a commit measured nothing or
        the published pages would need the internet; 2 when the asv config is missing; asv's own code when
        ``asv machine`` fails.
    """
    paths = paths_for(args)
    if not paths.config.exists():
        print(f"error: {paths.config} is missing; asv needs it to run", file=sys.stderr)
        return 2
    in_range = _commits_in_range(paths, args.range) if args.range else {_git(paths, "rev-parse", "HEAD")}
    if args.baseline:
        _check_baseline_before_run(paths, args.machine, args.baseline, in_range)
    rc = _asv(paths, "machine", "--yes", "--machine", args.machine)
    if rc:
        return rc
    regex = bench_regex(args.bench, args.full)
    extra = ["--record-samples"] + (["--quick"] if args.quick else []) + (["-b", regex] if regex else [])
    if args.range:
        rc = _asv(paths, "run", args.range, "--machine", args.machine, "--show-stderr", *extra, capture=True)
    else:
        (sha,) = in_range
        if _git(paths, "status", "--porcelain", "--untracked-files=no"):
            print(f"warning: uncommitted changes; their results are recorded against HEAD {sha[:8]}", file=sys.stderr)
        rc = _asv(paths, "run", "-E", f"{asv_env.TOOL_NAME}:{sys.executable}", "--set-commit-hash", sha,
                  "--machine", args.machine, "--show-stderr", *extra, capture=True)
    if rc not in (0, ASV_SOME_BENCHMARKS_FAILED):
        print(f"error: asv run exited {rc}; no verdicts written", file=sys.stderr)
        return 1
    history = load_history(paths, args.machine, baseline=args.baseline)
    published = _publish(paths)
    _write_reports(paths, history, None)
    print(markdown.summary_table(history))
    ran = [i for i, sha in enumerate(history.commits) if sha in in_range]
    empty = [msg for i in ran if (msg := nothing_measured(history, i))]
    if not ran:
        empty.append(f"asv recorded no results for {', '.join(sorted(c[:8] for c in in_range))}: no benchmark "
                     f"matched (full-tier classes named *Full need --full)")
    for msg in empty:
        print(f"error: {msg}", file=sys.stderr)
    regressed = [r for i in ran for r in history.regressions_of(i)]
    for r in regressed:
        if r.commit_after != history.commits[-1]:  # the summary table already lists the newest commit's
            print(f"{r.label} {r}")
    return 1 if gate.counted(regressed) or empty or published else 0


def _publish(paths: Paths) -> int:
    """``asv publish``, then point its pages at the vendored libraries; 1 when the pages would need the internet."""
    stale = migrate.path_keyed_files(paths.results_dir)
    if stale:
        print(f"warning: {len(stale)} results file(s) are keyed by a venv path (e.g. {stale[0].name}), so their "
              "history shows as separate lines; run `python -m harness migrate` (lossless, keeps a backup)",
              file=sys.stderr)
    if _asv(paths, "publish"):
        print("warning: asv publish failed; the roadmap page is written but not linked", file=sys.stderr)
        return 0
    try:
        publish.localize(paths.html_dir)
    except publish.OfflineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """``publish``: asv's HTML history (offline), the roadmap page and one page per criterion; runs no benchmark."""
    paths = paths_for(args)
    published = _publish(paths)
    _write_reports(paths, load_history(paths, args.machine), None)
    return published


def cmd_migrate(args: argparse.Namespace) -> int:
    """``migrate``: rewrite venv-path-keyed results (and stderr sidecars) to the stable key, keeping a backup."""
    paths = paths_for(args)
    try:
        print(migrate.migrate(paths.results_dir, args.python, dry_run=args.dry_run))
    except migrate.MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """``validate``: print the verdict table; exit 1 on a failed gate, a regression at the evaluated commit
    (against ``--baseline`` or the previous recorded commit; a borderline flip is printed, not counted), or an
    evaluated commit that measured nothing."""
    history = load_history(paths_for(args), args.machine, args.commit, args.baseline)
    print(markdown.summary_table(history))
    empty = nothing_measured(history)
    if empty:
        print(f"error: {empty}", file=sys.stderr)
    return 1 if empty or is_failing(history.latest) or gate.counted(history.latest_regressions()) else 0


def cmd_report(args: argparse.Namespace) -> int:
    """``report``: rewrite the markdown and HTML roadmap reports from the recorded results (runs nothing)."""
    paths = paths_for(args)
    try:
        _write_reports(paths, load_history(paths, args.machine, args.commit), args.out, args.force)
    except (FileExistsError, IsADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_roadmap(args: argparse.Namespace) -> int:
    """``roadmap``: print phases, schedule, milestones and how each criterion is measured (``--json`` for data).

    ``check_bindings()`` runs first so that a criterion without a binding fails loudly here rather
    than showing up as silently unmeasured in the report.

    Args:
        args: the parsed ``roadmap`` options (``--json``).

    Returns:
        0 (an unbound criterion raises instead).
    """
    check_bindings()
    if args.json:
        from dataclasses import asdict
        data = {"phases": [asdict(p) for p in roadmap.PHASES],
                "milestones": [asdict(m) for m in roadmap.MILESTONES],
                "schedule": [asdict(s) for s in roadmap.schedule()],
                "totals": asdict(roadmap.totals())}
        print(json.dumps(data, indent=1))
        return 0
    sched = {s.phase_id: s for s in roadmap.schedule()}
    for phase in roadmap.PHASES:
        s = sched[phase.id]
        r = phase.resources
        print(f"\n== {phase.id}: {phase.name}  (weeks {s.start_week}-{s.end_week}"
              f"{', critical path' if s.on_critical_path else ''}; depends on {', '.join(phase.dependencies) or '-'})")
        print(f"   {phase.description}")
        print(f"   team {r.team_size}, {r.gpu_hours} GPU h, {r.storage_tb} TB, {r.compute_instances} instances, "
              f"${phase.estimated_cost:,.0f}")
        print("   deliverables: " + "; ".join(phase.deliverables))
        for risk, mitigation in phase.risk_mitigations:
            print(f"   risk: {risk} -> {mitigation}")
    for milestone in roadmap.MILESTONES:
        print(f"\n-- {milestone.id}: {milestone.name} [{milestone.source}]")
        for crit in milestone.criteria:
            b = BINDINGS[crit.id]
            if b.not_measured or b.not_delivered:
                how = (f"NOT MEASURED: {b.not_measured.reason}" if b.not_measured else
                       f"NOT DELIVERED: {b.not_delivered.reason}")
            else:
                how = "; ".join(f"{c.label} {c.threshold_text} [{c.evidence.value}{'' if c.gate else ', context'}]"
                                for c in ((b.derived,) if b.derived else b.checks))
            print(f"   {crit.id:28s} {crit.text}\n   {'':28s} -> {how}")
    t = roadmap.totals()
    print(f"\nTotal: {t.duration_weeks} weeks on the critical path {' -> '.join(roadmap.critical_path())}, "
          f"${t.estimated_cost:,.0f}, {t.gpu_hours:,} GPU hours, peak team {t.max_team_size}, "
          f"{t.storage_tb} TB, peak {t.max_compute_instances} instances")
    return 0


_HOOKS = {
    "equivalence": "harness.interop.equivalence",
    "diagnose": "harness.qa.troubleshoot",
    "progress": "harness.qa.progress",
    "docs": "harness.qa.docs_check",
    "serve": "harness.serve_cli",
}


def _dispatch(command: str, argv: list[str]) -> int:
    module_name = _HOOKS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"error: `{command}` needs {module_name.replace('.', '/')}.py, which is not written yet", file=sys.stderr)
        return 2
    return int(module.main(argv) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, commit: bool = True) -> None:
        p.add_argument("--config", default="asv.conf.json", help="asv config (default: asv.conf.json)")
        p.add_argument("--machine", default=DEFAULT_MACHINE, help=f"asv machine name (default: {DEFAULT_MACHINE})")
        p.add_argument("--results-dir", help="override the config's results_dir")
        if commit:
            p.add_argument("--commit", help="evaluate this commit (hash prefix) instead of the latest")

    p = sub.add_parser("run", help="asv run, then validate, report and publish")
    common(p, commit=False)
    p.add_argument("--quick", action="store_true", help="run each benchmark once (asv --quick)")
    p.add_argument("-b", "--bench", metavar="REGEX", help="only benchmarks matching REGEX (asv -b)")
    p.add_argument("--range", metavar="A..B", help="benchmark every commit in A..B in asv-built virtualenvs")
    p.add_argument("--full", action="store_true",
                   help="include the full tier (benchmark classes whose name ends in Full), left out by default")
    p.add_argument("--baseline", metavar="REF",
                   help="compare with this recorded commit (hash prefix or git ref) instead of the previous one")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help="verdicts of the latest results; exit 1 on FAIL, FAILED-TO-RUN, regression, "
                                        "or nothing measured")
    common(p)
    p.add_argument("--baseline", metavar="REF",
                   help="compare with this recorded commit (hash prefix or git ref) instead of the previous one")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("report", help="write report/roadmap.md and the HTML roadmap page")
    common(p)
    p.add_argument("--out", help="markdown path (default: report/roadmap.md)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("publish", help="asv publish (offline) plus the roadmap and criterion pages")
    common(p, commit=False)
    p.set_defaults(func=cmd_publish)
    p = sub.add_parser("migrate", help="rewrite venv-path-keyed results to the stable key (keeps a backup)")
    common(p, commit=False)
    p.add_argument("--python", help="X.Y the results were recorded under (default: this interpreter's)")
    p.add_argument("--dry-run", action="store_true", help="only list what would move")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("roadmap", help="print the roadmap and how each criterion is measured")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_roadmap)
    for name, module in _HOOKS.items():
        sub.add_parser(name, help=f"delegates to {module}.main(argv)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m harness``; returns the process exit code (see the module docstring).

    Hook commands (equivalence, diagnose, progress, docs) are passed to their module's ``main`` before
    argparse sees them, so each keeps its own options and ``--help``.

    Args:
        argv: the command line without the program name; None reads ``sys.argv[1:]``.

    Returns:
        the exit code of the command (0 success, 1 a failed verdict or run, 2 bad input).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_asv":  # internal: asv with stderr capture (see _asv)
        _asv_with_stderr_capture(argv[1], argv[2:])
        return 0
    if argv and argv[0] in _HOOKS:
        return _dispatch(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", ResultsWarning)
        warnings.showwarning = _print_warning
        try:
            return args.func(args)
        except ResultsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Show a ResultsWarning as ``warning: <message>`` on stderr; others as Python would."""
    if issubclass(category, ResultsWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
