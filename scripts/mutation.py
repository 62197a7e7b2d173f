"""`make mutation`: mutmut over the modules that decide, each against its own tests.

The modules that delete backups or fail CI (retention, budgets, compare) are *gated*: every
surviving mutant must be listed in EQUIVALENT below with the reason it cannot be told apart
from the original, or the run exits 1. The other modules (migrate verify, health checks,
backup verify) are report-only: their score is printed, survivors listed, never a failure.

Each module runs in its own scratch copy of the tree (var/mutation/<name>/) whose
pyproject.toml carries a ``[tool.mutmut]`` table naming only that module and its test files,
so a mutant is only ever tried against the tests written for its module and one module's
run cannot reuse another's cache. mutmut 3 copies that tree into ``mutants/`` and runs each
mutant only against the tests that reach the mutated function.

Usage: scripts/mutation.py [--jobs N] [--only NAME ...] [--gated-only]
Exit: 0 every gated survivor is a listed equivalent; 1 otherwise or mutmut failed.
Runs one module at a time with one mutmut child by default (a shared two-core machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")
REPORT_ONLY_SHOWN = 15  # survivors printed for a report-only module; `mutmut results` has all


@dataclass(frozen=True)
class Target:
    name: str
    module: str  # path of the one file mutated
    tests: tuple[str, ...]  # the test files it is run against
    gated: bool
    timeout_s: int  # a stuck module fails this run, not the next hour
    pytest_args: tuple[str, ...] = ()  # e.g. --deselect for a test mutmut cannot run


TARGETS = (
    Target(
        "retention",
        "emrops/backup/retention.py",
        (
            "tests/backup/test_retention.py",
            "tests/backup/test_retention_boundaries.py",
        ),
        gated=True,
        timeout_s=300,
    ),
    Target(
        "budgets",
        "emrops/loadtest/budgets.py",
        (
            "tests/loadtest/test_budgets.py",
            "tests/loadtest/test_budgets_boundaries.py",
        ),
        gated=True,
        timeout_s=300,
    ),
    Target(
        "compare",
        "emrops/stats/compare.py",
        (
            "tests/stats/test_compare.py",
            "tests/stats/test_compare_boundaries.py",
        ),
        gated=True,
        timeout_s=300,
    ),
    Target(
        "migrate-verify",
        "emrops/migrate/verify.py",
        # test_zoo.py and test_guard.py run verify() whole, but with them mutmut's first,
        # traced pass alone took more than the module's time here: no mutant got tried
        ("tests/migrate/test_sqlcopy.py", "tests/migrate/test_canonical.py"),
        gated=False,
        timeout_s=840,
        # hashes in a spawned process pool: mutmut's trampoline in a spawned worker cannot
        # find mutmut's config (the worker starts in the test's tmp dir) and the pool hangs
        pytest_args=(
            "--deselect",
            "tests/migrate/test_sqlcopy.py::test_source_checksum_in_parts_equals_the_whole",
        ),
    ),
    Target(
        "health-checks",
        "emrops/health/checks.py",
        ("tests/health/test_health.py",),
        gated=False,
        timeout_s=840,
    ),
    Target(
        "backup-verify",
        "emrops/backup/verify.py",
        ("tests/backup/test_sqlite.py", "tests/backup/test_failures.py"),
        gated=False,
        timeout_s=840,
    ),
)

# Survivors that are not bugs: (target name, text of the mutated line, why). A survivor is
# matched by what its mutated line reads, not by mutmut's number (numbers shift as the
# module changes).
EQUIVALENT: tuple[tuple[str, str, str], ...] = (
    (
        "retention",
        "elif (b.created_at, b.id) >= (newest_verified.created_at, newest_verified.id):",
        "reached only for a backup other than the newest verified; equal (time, id) pairs would"
        " need two backups with one id, which a catalog never holds (plan keys reasons by id)",
    ),
    (
        "budgets",
        "_check_names(metric, None, expr)",
        "in _conditions the step was already checked by parse_table, its only caller, so"
        " leaving it out of this check changes nothing",
    ),
    (
        "budgets",
        'data = tomllib.loads(path.read_text(encoding="UTF-8"))',
        "codec names are case-insensitive: UTF-8 is utf-8",
    ),
    (
        "compare",
        "return math.inf if result >= 0 else -math.inf",
        "result == 0 with a zero baseline already returned 0.0 one line up",
    ),
    (
        "compare",
        "if len(self.values) < 1:",
        "a Series has at least one value, and one value has width 0, so its spread is 0.0"
        " with or without the guard",
    ),
)


# mutmut 3 leaves decorated functions (@property), class-level defaults and module constants
# alone, and some of the boundaries that matter most live there. These hand-written mutants
# (target, original text, mutated text) are applied one at a time to a copy of the module and
# the target's tests must fail on each; they count like mutmut's own.
MANUAL: tuple[tuple[str, str, str], ...] = (
    (
        "retention",
        "return not (self.keep_last or self.keep_daily",
        "return bool(self.keep_last or self.keep_daily",
    ),  # Policy.empty inverted
    ("retention", "    pinned: bool = False", "    pinned: bool = True"),
    (
        "budgets",
        'return f"{self.step}.{self.metric}" if self.step else self.metric',
        "return self.metric",
    ),  # Budget.name loses its step
    ("compare", "if len(self.values) < 2:", "if len(self.values) < 3:"),  # single-repeat guard
    ("compare", "if len(self.values) < 2:", "if len(self.values) < 1:"),
    ("compare", "median = abs(statistics.median(", "median = (statistics.median("),
    ("compare", "return 0.0 if width == 0 else math.inf", "return 0.0"),
    (
        "compare",
        "return float(statistics.median(self.values)) if self.central is None else self.central",
        "return float(statistics.median(self.values))",
    ),  # Series.center ignores the merged-histogram value
    (
        "compare",
        "return [d for d in self.deltas if d.verdict is Verdict.REGRESSED]",
        "return [d for d in self.deltas if d.verdict is not Verdict.UNCHANGED]",
    ),
    ("compare", "return bool(self.regressions)", "return not self.regressions"),
)


@dataclass
class Outcome:
    target: Target
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[tuple[str, str]] = field(default_factory=list)  # (mutant, mutated line)
    unexplained: list[tuple[str, str]] = field(default_factory=list)
    explained: list[tuple[str, str, str]] = field(default_factory=list)
    error: str | None = None
    timed_out: bool = False  # stopped at the module's timeout: the counts are partial
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(n for status, n in self.counts.items() if status != "not checked")

    @property
    def caught(self) -> int:
        return self.counts.get("killed", 0) + self.counts.get("timeout", 0)


def mutmut_table(target: Target) -> str:
    tests = ", ".join(f'"{t}"' for t in target.tests)
    extra = "".join(f', "{a}"' for a in target.pytest_args)
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["emrops"]\n'
        'also_copy = ["checklists", "templates"]\n'
        f'only_mutate = ["{target.module}"]\n'
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        f'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"{extra}]\n'
    )


def prepare(target: Target) -> Path:
    """A fresh scratch tree: the package, the tests, pyproject with this target's table."""
    where = WORK / target.name
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "emrops", where / "emrops", ignore=ignore)
    for folder in ("tests", "checklists", "templates"):  # what the tests read from the tree
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, where / folder, ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    # drop the repository's own [tool.mutmut] table (up to the next table or the end)
    text = re.sub(r"\n\[tool\.mutmut\]\n(?:(?!\n\[).)*", "\n", text, flags=re.S)
    (where / "pyproject.toml").write_text(text + mutmut_table(target), encoding="utf-8")
    return where


def _function(lines: list[str], name: str) -> list[str]:
    """The body of ``def name(`` in a mutated file: the lines indented deeper than the def."""
    for i, line in enumerate(lines):
        if line.lstrip().startswith(f"def {name}("):
            indent = len(line) - len(line.lstrip())
            end = i  # a signature may span lines; it ends at the first line ending in ':'
            while end < len(lines) - 1 and not lines[end].rstrip().endswith(":"):
                end += 1
            body = []
            for later in lines[end + 1 :]:
                if later.strip() and len(later) - len(later.lstrip()) <= indent:
                    break
                body.append(later)
            return body
    return []


def mutated_line(where: Path, target: Target, mutant: str) -> str:
    """What the mutant changed: its lines that differ from the original function.

    Read from mutmut's own copy (mutants/<module>), where each mutant is a function
    ``<name>__mutmut_<n>`` beside ``<name>__mutmut_orig`` (cheaper than `mutmut show`).
    """
    lines = (where / "mutants" / target.module).read_text(encoding="utf-8").splitlines()
    function = mutant.rsplit(".", 1)[1]
    original = _function(lines, function.rsplit("__mutmut_", 1)[0] + "__mutmut_orig")
    changed = _function(lines, function)
    added = [
        ln[2:].strip()
        for ln in difflib.ndiff(original, changed)
        if ln.startswith("+ ") and ln[2:].strip()
    ]
    return " / ".join(added) or "(a line removed)"


def run(target: Target, jobs: int) -> Outcome:
    outcome = Outcome(target)
    missing = [t for t in target.tests if not (ROOT / t).exists()]
    if missing:
        outcome.error = f"test file(s) missing: {', '.join(missing)}"
        return outcome
    where = prepare(target)
    log = where / "mutmut.log"
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        # its own process group, so a timeout ends mutmut's children and test processes too
        proc = subprocess.Popen(
            [str(MUTMUT), "run", "--max-children", str(jobs)],
            cwd=where,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=target.timeout_s)
        except subprocess.TimeoutExpired:
            # mutmut records each result as it goes: what was tried before the deadline counts
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            outcome.timed_out = True
            returncode = 0
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    outcome.seconds = time.monotonic() - start
    if returncode != 0:
        outcome.error = f"mutmut run exited {returncode} (log: {log})"
        return outcome
    listing = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"],
        cwd=where,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in listing.splitlines():
        found = re.match(r"^\s*(\S+): (.+)$", line)
        if not found:
            continue
        mutant, status = found.group(1), found.group(2).strip()
        outcome.counts[status] = outcome.counts.get(status, 0) + 1
        if status not in ("killed", "timeout", "not checked"):
            outcome.survivors.append((mutant, mutated_line(where, target, mutant)))
    run_manual(target, where, outcome)
    for mutant, text in outcome.survivors:
        why = next(
            (w for name, line, w in EQUIVALENT if name == target.name and line == text), None
        )
        if why is None:
            outcome.unexplained.append((mutant, text))
        else:
            outcome.explained.append((mutant, text, why))
    if not outcome.counts:
        outcome.error = f"mutmut reported no mutants (log: {log})"
    return outcome


def run_manual(target: Target, where: Path, outcome: Outcome) -> None:
    """Apply each MANUAL mutant of the target to a copy and run the target's tests on it."""
    for index, (name, original, mutated) in enumerate(MANUAL):
        if name != target.name:
            continue
        copy = where / f"manual-{index}"
        shutil.copytree(where / "emrops", copy / "emrops")
        for folder in ("tests", "checklists", "templates"):
            if (where / folder).is_dir():
                shutil.copytree(where / folder, copy / folder)
        shutil.copy(where / "pyproject.toml", copy / "pyproject.toml")
        source = copy / target.module
        text = source.read_text(encoding="utf-8")
        if text.count(original) != 1:
            outcome.error = f"manual mutant no longer applies (edit MANUAL): {original!r}"
            return
        source.write_text(text.replace(original, mutated), encoding="utf-8")
        tests = subprocess.run(  # cwd first on sys.path: the copy, not the editable install
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                *target.pytest_args,
                *target.tests,
            ],
            cwd=copy,
            capture_output=True,
            timeout=target.timeout_s,
            check=False,
        )
        shutil.rmtree(copy)
        status = "killed" if tests.returncode == 1 else "survived"
        if tests.returncode not in (0, 1):
            status = f"error (pytest exit {tests.returncode})"
        outcome.counts[status] = outcome.counts.get(status, 0) + 1
        if status != "killed":
            outcome.survivors.append((f"manual-{index}", mutated))


def report(outcome: Outcome) -> None:
    t = outcome.target
    kind = "gated" if t.gated else "report only"
    if outcome.error:
        print(f"\n{t.name} ({t.module}, {kind}): ERROR {outcome.error}", flush=True)
        return
    others = ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items()) if k != "killed")
    if outcome.timed_out:
        others = f"PARTIAL: stopped at the {t.timeout_s}s timeout; " + others
    print(
        f"\n{t.name} ({t.module}, {kind}): {outcome.caught}/{outcome.total} caught"
        f" ({others or 'all killed'}) in {outcome.seconds:.0f}s",
        flush=True,
    )
    for mutant, text, why in outcome.explained:
        print(f"  equivalent  {mutant}: {text}\n              -> {why}")
    shown = outcome.unexplained if t.gated else outcome.unexplained[:REPORT_ONLY_SHOWN]
    for mutant, text in shown:
        print(f"  SURVIVED    {mutant}: {text}")
    if len(shown) < len(outcome.unexplained):
        print(f"  ... and {len(outcome.unexplained) - len(shown)} more (mutmut results)")
    if outcome.unexplained:
        print(f"  (see one: cd {WORK / t.name} && {MUTMUT} show MUTANT)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="mutmut children (default 1)")
    parser.add_argument("--only", nargs="+", choices=[t.name for t in TARGETS], default=None)
    parser.add_argument("--gated-only", action="store_true", help="skip the report-only modules")
    parser.add_argument(
        "--timeout", type=int, default=None, help="seconds per module (default: its own)"
    )
    args = parser.parse_args(argv)
    if not MUTMUT.exists():
        print(f"mutmut is not installed in this venv ({MUTMUT}); run make install", file=sys.stderr)
        return 1
    chosen = [
        t
        for t in TARGETS
        if (args.only is None or t.name in args.only) and (t.gated or not args.gated_only)
    ]
    failed = False
    for target in chosen:
        tests = ", ".join(target.tests)
        print(f"== {target.name}: mutating {target.module} against {tests}", flush=True)
        if args.timeout is not None:
            target = dataclasses.replace(target, timeout_s=args.timeout)
        outcome = run(target, args.jobs)
        report(outcome)
        if target.gated and (outcome.error or outcome.unexplained or outcome.timed_out):
            failed = True
    verdict = "FAILED (a gated module has a survivor or did not run)" if failed else "ok"
    print(f"\nmutation: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
