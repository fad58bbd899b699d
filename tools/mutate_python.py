"""Mutation testing of the pure Python logic: every mutant must fail a fast unit test.

mutmut plants one small change at a time (an operator, a constant, a comparison) in each
function of the modules below and runs the unit tests that cover that function; a mutant that
no test notices is a survivor. A survivor either shows a missing test, or the change cannot alter
behaviour (an equivalent mutant); the equivalent ones are listed, each with its reason, in
tools/mutants/python_equivalent.toml, matched by module and the changed line's text (not by
mutmut's mutant number, which shifts on every edit).

The campaign runs in a throwaway copy of the package and the unit tests (mutmut writes its
mutants/ folder next to the code it mutates); the working tree is never touched.

    python tools/mutate_python.py [--quick | --modules digest,hashing] [--keep] [--jobs N]

Exit 0: no unexplained survivor. 1: unexplained survivors, listed with module:line and diff.
2: the campaign could not run (the clean tests failed, or mutmut crashed).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT_FILE = ROOT / "tools" / "mutants" / "python_equivalent.toml"


@dataclass(frozen=True)
class Target:
    """A module under mutation and the fast unit tests that must kill its mutants."""

    path: str
    tests: tuple[str, ...]


TARGETS: dict[str, Target] = {
    "digest": Target(
        "marketplace/protocol/digest.py",
        ("tests/unit/test_digest.py", "tests/unit/test_digest_properties.py"),
    ),
    "hashing": Target("marketplace/protocol/hashing.py", ("tests/unit/test_hashing.py",)),
    "spec": Target(
        "marketplace/protocol/spec.py",
        ("tests/unit/test_spec.py", "tests/unit/test_spec_messages.py"),
    ),
    "matcher": Target("marketplace/matching/matcher.py", ("tests/unit/test_matcher.py",)),
    "keeper": Target("marketplace/relayer/keeper.py", ("tests/unit/test_keeper.py",)),
}
QUICK = ("digest", "hashing")

# mutmut's exit codes of a mutant's test run, folded into the table's columns.
KILLED, SURVIVED, NO_TESTS, TIMEOUT, OTHER = "killed", "survived", "no tests", "timeout", "other"
_STATUS_BY_CODE: dict[int | None, str] = {
    1: KILLED,
    3: KILLED,  # pytest's internal error under the mutant: the mutant broke an import or fixture
    37: KILLED,  # caught by the type checker
    0: SURVIVED,
    5: NO_TESTS,
    33: NO_TESTS,
    36: TIMEOUT,
    -24: TIMEOUT,
    24: TIMEOUT,
    152: TIMEOUT,
    255: TIMEOUT,
}


def status_of(exit_code: int | None) -> str:
    """The table column of a mutant whose test run ended with `exit_code` (None: never run)."""
    return _STATUS_BY_CODE.get(exit_code, OTHER)


class MutationError(RuntimeError):
    """The campaign could not run or its configuration is broken."""


@dataclass(frozen=True)
class Equivalent:
    """A survivor that cannot change behaviour: `removed` lines became `added` lines."""

    module: str
    removed: tuple[str, ...]
    added: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    status: str
    diff: str = ""
    line: int = 0

    @property
    def change(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return changed_lines(self.diff)


@dataclass
class Row:
    module: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    equivalent: int = 0
    timeout: int = 0
    other: int = 0
    unexplained: list[Mutant] = field(default_factory=list)


def changed_lines(diff: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The removed and the added lines of a unified diff, stripped of indentation."""
    removed: list[str] = []
    added: list[str] = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            removed.append(line[1:].strip())
        elif line.startswith("+"):
            added.append(line[1:].strip())
    return tuple(removed), tuple(added)


def load_equivalents(text: str) -> list[Equivalent]:
    """Parse the equivalent-mutant list; each entry names its module, lines and reason."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MutationError(f"{EQUIVALENT_FILE} is not valid TOML: {exc}; fix the file") from exc
    result: list[Equivalent] = []
    for i, entry in enumerate(data.get("equivalent", [])):
        missing = {"module", "removed", "added", "reason"} - set(entry)
        if missing:
            raise MutationError(
                f"equivalent entry {i + 1} lacks {sorted(missing)}; give module, removed, added "
                "(the changed lines as in the diff) and a one-line reason"
            )
        if not str(entry["reason"]).strip():
            raise MutationError(f"equivalent entry {i + 1} has an empty reason; say why")
        result.append(
            Equivalent(
                module=entry["module"],
                removed=_lines(entry["removed"]),
                added=_lines(entry["added"]),
                reason=str(entry["reason"]).strip(),
            )
        )
    return result


def _lines(value: str | Sequence[str]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    return tuple(line.strip() for line in items)


def explain(mutant: Mutant, equivalents: Iterable[Equivalent]) -> Equivalent | None:
    """The entry that declares `mutant` equivalent, if any."""
    removed, added = mutant.change
    for entry in equivalents:
        if entry.module == mutant.module and entry.removed == removed and entry.added == added:
            return entry
    return None


def tabulate(
    modules: Sequence[str], mutants: Iterable[Mutant], equivalents: Sequence[Equivalent]
) -> tuple[list[Row], list[Equivalent]]:
    """One row per module (in `modules` order) and the equivalent entries that matched nothing
    among the run modules (stale: the line they name changed or was killed)."""
    rows = {module: Row(module) for module in modules}
    used: set[Equivalent] = set()
    for mutant in mutants:
        row = rows[mutant.module]
        row.mutants += 1
        if mutant.status == KILLED:
            row.killed += 1
        elif mutant.status == TIMEOUT:
            row.timeout += 1
        elif mutant.status == OTHER:
            row.other += 1
            row.unexplained.append(mutant)
        else:
            entry = explain(mutant, equivalents)
            if entry is None:
                row.survived += 1
                row.unexplained.append(mutant)
            else:
                row.equivalent += 1
                used.add(entry)
    stale = [e for e in equivalents if e.module in rows and e not in used]
    return list(rows.values()), stale


def render(rows: Sequence[Row]) -> str:
    """The results table, one line per module and a total."""
    headers = ("module", "mutants", "killed", "survived", "equivalent", "timeout", "other")
    total = Row("total")
    for row in rows:
        for name in headers[1:]:
            setattr(total, name, getattr(total, name) + getattr(row, name))
    lines = [[row.module, *(str(getattr(row, name)) for name in headers[1:])] for row in rows]
    lines.append([total.module, *(str(getattr(total, name)) for name in headers[1:])])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return " | ".join([first, *rest])

    rule = "-+-".join("-" * width for width in widths)
    return "\n".join(
        [fmt(headers), rule, *(fmt(line) for line in lines[:-1]), rule, fmt(lines[-1])]
    )


def source_line(source: str, function: str, diff: str) -> int:
    """The line of `source` that the first removed line of `diff` names, inside `function`
    (a method is found by its bare name); 0 when it cannot be placed."""
    removed, _ = changed_lines(diff)
    if not removed:
        return 0
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            end = node.end_lineno or len(lines)
            for number in range(start, end + 1):
                if lines[number - 1].strip() == removed[0]:
                    return number
    return 0


def function_of(mutant_name: str) -> str:
    """The source function a mutmut mutant name points at: `x_f__mutmut_3` is f, and a method's
    name carries its class between mutmut's separators."""
    mangled = mutant_name.rpartition(".")[2].partition("__mutmut_")[0]
    if "ǁ" in mangled:  # mutmut's class separator: xǁClassǁmethod
        return mangled.rpartition("ǁ")[2]
    return mangled.removeprefix("x_")


# --- the campaign (I/O) ---------------------------------------------------------------------


def _scratch_copy(work: Path, targets: Sequence[Target]) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache")
    shutil.copytree(ROOT / "marketplace", work / "marketplace", ignore=ignore)
    (work / "tests" / "unit").mkdir(parents=True)
    # conftest.py and the fixture modules it imports (tests/pg_fixture.py).
    for shared in (ROOT / "tests").glob("*.py"):
        shutil.copy2(shared, work / "tests" / shared.name)
    for target in targets:
        for test in target.tests:
            shutil.copy2(ROOT / test, work / test)
    config = {
        "source_paths": ["marketplace"],
        "only_mutate": [t.path for t in targets],
        "pytest_add_cli_args_test_selection": sorted({t for tg in targets for t in tg.tests}),
        # A fixed seed: hypothesis draws the same examples for every mutant and every run.
        # No shrinking (tests/conftest.py's "mutation" profile): a killed mutant's first
        # failing example is enough.
        "pytest_add_cli_args": [
            "--hypothesis-seed=0",
            "--hypothesis-profile=mutation",
            "-p",
            "no:cacheprovider",
        ],
        # A mutant that loops forever is stopped after a few times its tests' clean duration,
        # not mutmut's default of 30 times (hours for the matcher's property tests).
        "timeout_multiplier": 3.0,
    }
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in config.items())
    (work / "pyproject.toml").write_text(pyproject + section, encoding="utf-8")


def _run_mutmut(work: Path, jobs: int, log: Path) -> None:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("SOLCX_BINARY_PATH", str(ROOT / "tools" / "solc"))
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)]
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run(
            command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        raise MutationError(
            f"mutmut exited {code} (the clean unit tests must pass first); its log: {log}\n{tail}"
        )


def _collect(work: Path, targets: Mapping[str, Target]) -> list[Mutant]:
    by_path = {t.path: name for name, t in targets.items()}
    found: list[tuple[str, str, str]] = []  # (module, mutant name, status)
    for path, module in by_path.items():
        meta = work / "mutants" / (path + ".meta")
        if not meta.exists():
            raise MutationError(f"mutmut left no results for {path} ({meta}); see its log")
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        found.extend((module, name, status_of(code)) for name, code in codes.items())
    unkilled = [(m, n) for m, n, s in found if s not in (KILLED, TIMEOUT)]
    diffs = _diffs(work, [n for _, n in unkilled])
    mutants: list[Mutant] = []
    for module, name, status in found:
        diff = diffs.get(name, "")
        line = 0
        if diff:
            source = (ROOT / targets[module].path).read_text(encoding="utf-8")
            line = source_line(source, function_of(name), diff)
        mutants.append(Mutant(name, module, status, diff, line))
    return mutants


def _diffs(work: Path, names: Sequence[str]) -> dict[str, str]:
    if not names:
        return {}
    # mutmut reads its configuration and mutants/ relative to the working directory.
    script = (
        "import json, sys\n"
        "from mutmut.__main__ import get_diff_for_mutant\n"
        "print(json.dumps({n: get_diff_for_mutant(n) for n in json.load(sys.stdin)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=work,
        input=json.dumps(list(names)),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MutationError(f"could not read the mutants' diffs from mutmut:\n{done.stderr}")
    diffs: dict[str, str] = json.loads(done.stdout)
    return diffs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--modules", help=f"comma-separated subset of {', '.join(TARGETS)}")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel mutants")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy and print it")
    args = parser.parse_args(argv)

    if args.modules:
        modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    else:
        modules = list(QUICK if args.quick else TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown or not modules:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(TARGETS)}")
    targets = {m: TARGETS[m] for m in modules}

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="depin-mutate-"))
    try:
        equivalents = load_equivalents(EQUIVALENT_FILE.read_text(encoding="utf-8"))
        _scratch_copy(work, list(targets.values()))
        print(f"mutating {', '.join(t.path for t in targets.values())} ...", flush=True)
        _run_mutmut(work, args.jobs, work / "mutmut.log")
        mutants = _collect(work, targets)
    except MutationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"scratch copy kept at {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows, stale = tabulate(modules, mutants, equivalents)
    print(render(rows))
    print(f"elapsed: {time.monotonic() - started:.0f} s")
    for entry in stale:
        print(
            f"note: equivalent entry for {entry.module} no longer matches a survivor "
            f"({' / '.join(entry.removed)}); remove it if the line changed"
        )
    unexplained = [m for row in rows for m in row.unexplained]
    if not unexplained:
        return 0
    print(f"\n{len(unexplained)} unexplained mutant(s): add a test that fails on each, or list it")
    print(f"in {EQUIVALENT_FILE.relative_to(ROOT)} with the reason it cannot change behaviour.\n")
    for mutant in unexplained:
        print(f"{targets[mutant.module].path}:{mutant.line} [{mutant.status}] {mutant.name}")
        print(mutant.diff or "(no diff)")
        print()
    return 1


if __name__ == "__main__":
    sys.exit(main())
