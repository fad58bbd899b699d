"""Mutation testing of the protocol contracts: slither-mutate, judged by the fast unit tests.

Each mutant (an operator flipped, a statement commented out or replaced by a revert, ...) is
compiled and the Foundry unit suites (contracts/test/unit) run against it; a mutant the tests do
not fail on "survived". A survivor is either a gap in the tests or an equivalent mutant (one no
test can tell apart from the original); the equivalent ones are listed, each with a reason, in
tools/mutants/contracts_equivalent.toml, matched by contract, the mutated text and its
replacement (never by line number, which moves with every edit):

    [[equivalent]]
    contract = "JobMarket"
    original = "if (fee != 0)"
    mutant = "if (fee >= 0)"
    reason = "why no behaviour can tell them apart"

Exit 1 when any survivor is not listed there; 2 when the campaign could not run; 0 otherwise.

slither-mutate edits the sources in place, so everything happens in a throwaway copy of contracts/
(sources, unit tests, test utilities and the remapped libraries); contracts/ itself is never
touched. For speed the copy is compiled without the optimizer and with no code-size limit (the
unit tests check behaviour, not bytecode size), and slither-mutate's own per-mutant compile (a
`forge clean` and an optimized rebuild) is replaced by one incremental `forge build` of the copy
whose artifacts the test run then reuses. A mutant that does not compile is counted as such, never
as killed.

    python tools/mutate_contracts.py              # the verdict and money paths (DEFAULT_SCOPE)
    python tools/mutate_contracts.py --quick      # a few minutes, for `make test`
    python tools/mutate_contracts.py [--contracts JobMarket,JobLib] [--mutators ROR,LOR]
        [--target-functions reveal,_resolve] [--suites JobMarketAudit,Mutants*] [--all]
        [--rev HEAD] [--timeout 600] [--budget S] [--keep DIR]
    python tools/mutate_contracts.py --from-log DIR/slither-mutate.log  # re-judge a kept run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"
FORGE_FROM_NPM = ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin"
EQUIVALENT_FILE = ROOT / "tools" / "mutants" / "contracts_equivalent.toml"
DEPS = "_deps"
CHILD_FLAG = "--as-slither-mutate"

# The protocol v2 contracts under test, in campaign priority order (verdict and money paths
# first), each with its file under contracts/src.
TARGETS: dict[str, str] = {
    "JobMarket": "JobMarket.sol",
    "MarketLib": "libraries/MarketLib.sol",
    "JobLib": "libraries/JobLib.sol",
    "ProviderRegistry": "ProviderRegistry.sol",
    "SortitionTree": "libraries/SortitionTree.sol",
}
# Test folders copied with the sources: the unit suites and what they import. The invariant,
# gas, bench and lifecycle suites stay out of the build and out of the run.
TEST_DIRS = ("test/unit", "test/utils")
# Suites that run against every mutant of a contract; a suite that cannot reach the contract
# (the token's, the tree's own for a market mutant, the test-base self-checks) is left out.
NOT_RUN: dict[str, tuple[str, ...]] = {
    "JobMarket": ("test/unit/ComputeToken.t.sol", "test/unit/SortitionTree.t.sol"),
    "MarketLib": ("test/unit/ComputeToken.t.sol", "test/unit/SortitionTree.t.sol"),
    "JobLib": ("test/unit/ComputeToken.t.sol", "test/unit/SortitionTree.t.sol"),
    "ProviderRegistry": ("test/unit/ComputeToken.t.sol", "test/unit/SortitionTree.t.sol"),
    "SortitionTree": ("test/unit/ComputeToken.t.sol",),
}


@dataclass(frozen=True)
class Pass:
    """One slither-mutate run: a contract, the functions and mutators to apply (None: all)."""

    contract: str
    functions: tuple[str, ...] | None = None
    mutators: str | None = None


# Suites that settle, slash and pay: what judges the verdict and money paths.
VERDICT_SUITES = frozenset(
    {"JobMarketAudit", "JobMarketFinalize", "JobMarketExpire", "Attacks", "Regressions", "Mutants*"}
)
# `make mutate` without options: who wins (every relational and logical operator of the verdict
# rule) and who is paid (every statement of the pay, reward, slash and close paths commented out
# in turn), about 95 mutants, 45 to 60 minutes on 2 cores. The whole of the five contracts is
# some 5,900 mutants, about 60 hours here: `--all`.
DEFAULT_SCOPE = (
    Pass("JobMarket", ("_resolve",), "ROR,LOR"),
    Pass("JobMarket", ("_payVerifiers", "_distributeReward", "_slash", "_close"), "CR"),
)
# `make test`'s short run: every statement of the slash-reward split (who gets a slashed
# collateral's reward share) commented out in turn, 12 mutants, under 10 minutes on 2 cores.
QUICK_SCOPE = (Pass("JobMarket", ("_distributeReward",), "CR"),)
QUICK_SUITES = frozenset({"JobMarketAudit", "JobMarketFinalize", "Mutants*"})
DEFAULT_TIMEOUT_S = 600

FAST_ENV = {
    "FOUNDRY_PROFILE": "default",
    "FOUNDRY_OPTIMIZER": "false",
    "FOUNDRY_BUILD_INFO": "false",
    "FOUNDRY_DYNAMIC_TEST_LINKING": "false",
    # Unoptimized JobMarket is above EIP-170's 24 KiB; the limit guards deployment, not behaviour.
    "FOUNDRY_DISABLE_CODE_SIZE_LIMIT": "true",
}

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_PREFIX = re.compile(r"^(?:INFO|ERROR|WARNING|DEBUG):Slither-Mutate:", re.MULTILINE)
ABORTED = re.compile(r"Test suite fails with mutations, aborting|No functions in \w+ match")
MUTATING = re.compile(r"Mutating contract (\w+)")
# `[ROR] Line 712: 'votes * 2 > seats' ==> 'votes * 2 >= seats' --> UNCAUGHT`; a mutated
# statement can span lines, so the strings are matched up to the next verdict.
RESULT = re.compile(
    r"\[(?P<mutator>[A-Z]+)\] Line (?P<line>\d+): '(?P<original>.*?)' ==> '(?P<mutant>.*?)'"
    r" --> (?P<verdict>UNCAUGHT|CAUGHT|COMPILATION FAILURE)",
    re.DOTALL,
)
NAME = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\(|$)")


class MutationError(RuntimeError):
    """The campaign could not run; the message says what to fix."""


@dataclass(frozen=True)
class Mutant:
    contract: str
    mutator: str
    line: int
    original: str
    mutant: str
    verdict: str  # "killed", "survived" or "no-compile"


@dataclass(frozen=True)
class Equivalent:
    contract: str
    original: str
    mutant: str
    reason: str


@dataclass
class Row:
    contract: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    equivalent: int = 0
    no_compile: int = 0
    survivors: list[Mutant] = field(default_factory=list)


VERDICTS = {"CAUGHT": "killed", "UNCAUGHT": "survived", "COMPILATION FAILURE": "no-compile"}


def normalize(code: str) -> str:
    """Source text with runs of whitespace folded, so reformatting does not break a match."""
    return " ".join(code.split())


def parse_log(text: str) -> list[Mutant]:
    """Every mutant verdict slither-mutate logged (run with -v), attributed to its contract."""
    text = LOG_PREFIX.sub("", ANSI.sub("", text))
    events: list[tuple[int, str | Mutant]] = [
        (m.start(), m.group(1)) for m in MUTATING.finditer(text)
    ]
    for m in RESULT.finditer(text):
        events.append(
            (
                m.start(),
                Mutant(
                    contract="",
                    mutator=m.group("mutator"),
                    line=int(m.group("line")),
                    original=m.group("original"),
                    mutant=m.group("mutant"),
                    verdict=VERDICTS[m.group("verdict")],
                ),
            )
        )
    contract = "?"
    mutants: list[Mutant] = []
    for _, event in sorted(events, key=lambda e: e[0]):
        if isinstance(event, str):
            contract = event
        else:
            mutants.append(
                Mutant(
                    contract,
                    event.mutator,
                    event.line,
                    event.original,
                    event.mutant,
                    event.verdict,
                )
            )
    return mutants


def load_equivalents(path: Path = EQUIVALENT_FILE) -> list[Equivalent]:
    if not path.is_file():
        return []
    data = tomllib.loads(path.read_text(encoding="utf8"))
    out: list[Equivalent] = []
    for n, entry in enumerate(data.get("equivalent", []), 1):
        missing = [k for k in ("contract", "original", "mutant", "reason") if not entry.get(k)]
        if missing:
            raise MutationError(f"{path}: entry {n} lacks {', '.join(missing)}; give all four")
        out.append(
            Equivalent(
                str(entry["contract"]),
                str(entry["original"]),
                str(entry["mutant"]),
                str(entry["reason"]),
            )
        )
    return out


def find_equivalent(mutant: Mutant, equivalents: Iterable[Equivalent]) -> Equivalent | None:
    for e in equivalents:
        if (
            e.contract == mutant.contract
            and normalize(e.original) == normalize(mutant.original)
            and normalize(e.mutant) == normalize(mutant.mutant)
        ):
            return e
    return None


def tabulate(
    mutants: Iterable[Mutant], equivalents: Sequence[Equivalent], contracts: Sequence[str]
) -> list[Row]:
    rows = {c: Row(c) for c in contracts}
    for m in mutants:
        row = rows.setdefault(m.contract, Row(m.contract))
        row.mutants += 1
        if m.verdict == "killed":
            row.killed += 1
        elif m.verdict == "no-compile":
            row.no_compile += 1
        elif find_equivalent(m, equivalents) is not None:
            row.equivalent += 1
        else:
            row.survived += 1
            row.survivors.append(m)
    return list(rows.values())


def render(rows: Sequence[Row]) -> str:
    header = ("contract", "mutants", "killed", "survived", "equivalent", "did not compile")
    body = [(r.contract, r.mutants, r.killed, r.survived, r.equivalent, r.no_compile) for r in rows]
    total = ("total", *(sum(int(str(b[i])) for b in body) for i in range(1, len(header))))
    cells = [tuple(str(c) for c in row) for row in (header, *body, total)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        first = row[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))
        return "| " + " | ".join((first, *rest)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(c) for c in cells[1:])])


def function_names(text: str) -> list[str]:
    """`reveal,_resolve(uint256,uint256)` -> ["reveal", "_resolve"]: functions are chosen by name
    (a parameter list, commas and all, is accepted and ignored)."""
    names: list[str] = []
    for part in re.sub(r"\([^()]*\)", "", text).split(","):
        m = NAME.match(part)
        if part.strip() and not m:
            raise MutationError(f"{part.strip()!r} is not a function name; give names like reveal")
        if m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def functions_in(source: str, names: Iterable[str]) -> list[str]:
    """The names of functions declared in `source` (slither-mutate stops the whole campaign when
    a contract declares none of the requested functions)."""
    return [n for n in names if re.search(rf"\bfunction\s+{re.escape(n)}\s*\(", source)]


# ---------------------------------------------------------------- the throwaway copy


def _forge_env() -> dict[str, str]:
    env = dict(os.environ)
    if shutil.which("forge", path=env.get("PATH")) is None and FORGE_FROM_NPM.is_dir():
        env["PATH"] = f"{FORGE_FROM_NPM}{os.pathsep}{env.get('PATH', '')}"
    env["FOUNDRY_PROFILE"] = "default"
    return env


def _only_solidity(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if not n.endswith(".sol") and not Path(folder, n).is_dir()]


def _checkout(rev: str, into: Path) -> Path:
    """contracts/ as committed at `rev` (others' uncommitted edits stay out of the campaign)."""
    paths = ["contracts/foundry.toml", "contracts/src", *(f"contracts/{d}" for d in TEST_DIRS)]
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, *paths], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "contracts"


def _chosen(file_name: str, suites: set[str] | None) -> bool:
    """Whether a test file is one of `suites` (None: all); `Mutants*` matches by prefix."""
    if suites is None:
        return True
    stem = file_name.removesuffix(".t.sol")
    return any(stem == s or (s.endswith("*") and stem.startswith(s[:-1])) for s in suites)


def prepare_copy(
    work: Path, env: dict[str, str], origin: Path = CONTRACTS, suites: set[str] | None = None
) -> dict[str, str]:
    """Lays the sources and the unit tests from `origin` (only `suites`, by file stem, when
    given), and every remapped library, into `work`; returns forge's overrides for building it."""
    out = subprocess.run(
        ["forge", "config", "--json"],
        cwd=CONTRACTS,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    config: dict[str, Any] = json.loads(out)
    src = str(config.get("src", "src"))
    shutil.copy2(origin / "foundry.toml", work / "foundry.toml")
    shutil.copytree(origin / src, work / src, ignore=_only_solidity)
    for folder in TEST_DIRS:
        # Test-base self-checks (*.t.sol in utils) exercise no contract under test.
        chosen = set() if folder.endswith("utils") else suites
        shutil.copytree(
            origin / folder,
            work / folder,
            ignore=lambda d, names, c=chosen: [
                *_only_solidity(d, names),
                *(n for n in names if n.endswith(".t.sol") and not _chosen(n, c)),
            ],
        )
    remappings: list[str] = []
    copied: dict[Path, str] = {}
    for remapping in config.get("remappings", []):
        prefix, _, target = str(remapping).partition("=")
        resolved = (CONTRACTS / target).resolve()
        if resolved.is_relative_to(CONTRACTS.resolve()):
            remappings.append(f"{prefix}={resolved.relative_to(CONTRACTS.resolve())}/")
            continue
        if resolved not in copied:
            name = re.sub(r"[^A-Za-z0-9]+", "-", prefix).strip("-") or "lib"
            shutil.copytree(resolved, work / DEPS / name, ignore=_only_solidity)
            copied[resolved] = name
        remappings.append(f"{prefix}={DEPS}/{copied[resolved]}/")
    overrides = {
        **FAST_ENV,
        "FOUNDRY_LIBS": json.dumps([DEPS]),
        "FOUNDRY_REMAPPINGS": "\n".join(remappings),
    }
    solc = config.get("solc")
    if isinstance(solc, str) and "/" in solc:
        overrides["FOUNDRY_SOLC"] = str((CONTRACTS / solc).resolve())
    return overrides


def test_command(contract: str) -> str:
    skipped = NOT_RUN.get(contract, ())
    if not skipped:
        return "forge test"
    pattern = skipped[0] if len(skipped) == 1 else "{" + ",".join(skipped) + "}"
    return f"forge test --no-match-path '{pattern}'"


# ---------------------------------------------------------------- the campaign


def _run_logged(cmd: list[str], cwd: Path, env: dict[str, str], limit_s: float) -> str:
    """Runs slither-mutate, echoing each mutant's verdict as it lands; returns its whole log."""
    lines: list[str] = []
    started = time.monotonic()
    deadline = started + limit_s
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            log = _follow(proc.stdout, lines, started, deadline, limit_s)
        finally:
            # slither-mutate restores the sources only when it ends by itself; an interrupted
            # campaign leaves a mutant in the copy, which is thrown away with it.
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
    if ABORTED.search(log) or not MUTATING.search(log):
        tail = "".join(lines[-40:])
        raise MutationError(
            f"slither-mutate did not start mutating (exit {proc.returncode}); the unmutated"
            f" contracts must pass `{cmd[cmd.index('--test-cmd') + 1]}` first:\n{tail}"
        )
    return log


def _follow(
    stream: IO[str],
    lines: list[str],
    started: float,
    deadline: float,
    limit_s: float,
) -> str:
    for raw in stream:
        lines.append(raw)
        clean = LOG_PREFIX.sub("", ANSI.sub("", raw)).rstrip()
        if "-->" in clean or "Mutating contract" in clean or "Test suite" in clean:
            stamp = time.monotonic() - started
            text, arrow, verdict = clean.rpartition(" --> ")
            shown = f"{text[:120]}{' ...' if len(text) > 120 else ''}{arrow}{verdict}"
            print(f"  {stamp:5.0f} s  {shown if arrow else clean[:160]}", flush=True)
        if time.monotonic() > deadline:
            lines.append(f"\n[campaign stopped after {limit_s:.0f} s]\n")
            print(f"  campaign stopped after {limit_s:.0f} s", flush=True)
            break
    return "".join(lines)


def run_contract(
    work: Path,
    env: dict[str, str],
    contract: str,
    mutators: str | None,
    functions: list[str] | None,
    timeout_s: int,
    limit_s: float,
    tag: str = "",
) -> str:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        CHILD_FLAG,
        str(work / "src" / TARGETS[contract]),
        "--test-cmd",
        test_command(contract),
        "--timeout",
        str(timeout_s),
        "--output-dir",
        str(work.parent / f"campaign-{contract}{tag}"),
        "--verbose",
        # Keep mutating a line after a revert or comment mutant of it survived: the table then
        # counts every mutant, not only those on lines no earlier mutant slipped through.
        "--comprehensive",
        "--compile-force-framework",
        "foundry",
        "--foundry-ignore-compile",
        "--foundry-out-directory",
        "analysis/out",
    ]
    if mutators:
        cmd += ["--mutators-to-run", mutators]
    if functions:
        cmd += ["--target-functions", ",".join(functions)]
    return _run_logged(cmd, work, env, limit_s)


def _forge_build(work: Path, env: dict[str, str], extra: Sequence[str] = ()) -> None:
    proc = subprocess.run(
        ["forge", "build", *extra], cwd=work, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise MutationError(
            f"the unmutated copy of contracts/ does not build; fix that first:\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )


def child_main(argv: list[str]) -> None:
    """slither-mutate itself, with its per-mutant compile replaced (see the module docstring)."""
    from slither.tools.mutator import __main__ as mutate_main  # type: ignore[import-untyped]
    from slither.tools.mutator.utils import (  # type: ignore[import-untyped]
        testing_generated_mutant,
    )
    from slither.utils import function as function_utils  # type: ignore[import-untyped]
    from slither.utils.colors import Colors  # type: ignore[import-untyped]

    Colors.COLORIZATION_ENABLED = False

    def compile_mutant(file_path: str, mappings: str | None) -> bool:
        return subprocess.run(["forge", "build"], capture_output=True).returncode == 0

    testing_generated_mutant.compile_generated_mutant = compile_mutant

    # Functions are targeted by name: slither spells a storage-struct parameter as the struct's
    # whole tuple of member types, which nobody should have to type. slither-mutate imports this
    # helper at each call, so the selector it computes for "_resolve" and for the declared
    # "_resolve(uint256,(...))" becomes the same.
    selector = function_utils.get_function_id

    def by_name(signature: str) -> int:
        return int(selector(signature.split("(", 1)[0].strip() + "()"))

    function_utils.get_function_id = by_name
    sys.argv = ["slither-mutate", *argv]
    mutate_main.main()


def campaign(args: argparse.Namespace) -> int:
    started = time.monotonic()
    passes: tuple[Pass, ...] = args.passes
    contracts = list(dict.fromkeys(p.contract for p in passes))
    load_equivalents()  # a malformed list fails now, not after the campaign
    env = _forge_env()
    logs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        base = args.keep.resolve() if args.keep else Path(tmp)
        work = base / "contracts"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        origin = CONTRACTS
        if args.rev:
            (base / "rev").mkdir(exist_ok=True)
            origin = _checkout(args.rev, base / "rev")
        env.update(prepare_copy(work, env, origin, args.suites))
        print(f"mutating a copy of contracts/ in {work}", flush=True)
        # Sources only, with build info, for slither's analysis; then everything for the tests.
        analysis_env = {
            **env,
            "FOUNDRY_OUT": "analysis/out",
            "FOUNDRY_CACHE_PATH": "analysis/cache",
            "FOUNDRY_BUILD_INFO": "true",
        }
        _forge_build(work, analysis_env, ["--skip", "test"])
        _forge_build(work, env)
        print(f"copy built ({time.monotonic() - started:.0f} s)", flush=True)
        for n, step in enumerate(passes):
            contract = step.contract
            chosen = list(step.functions) if step.functions is not None else None
            if chosen is not None:
                source = (work / "src" / TARGETS[contract]).read_text(encoding="utf8")
                chosen = functions_in(source, chosen)
                if not chosen:
                    print(f"{contract}: none of the target functions is declared there; skipped")
                    continue
            left = args.budget - (time.monotonic() - started) if args.budget else 10**9
            if left <= 0:
                print(f"{contract}: not run, the --budget of {args.budget} s is spent")
                continue
            scope = f" {','.join(chosen)}" if chosen else ""
            print(
                f"{contract}{scope} [{step.mutators or 'all mutators'}]: {test_command(contract)}",
                flush=True,
            )
            logs.append(
                run_contract(
                    work, env, contract, step.mutators, chosen, args.timeout, left, f"-{n}"
                )
            )
        if args.keep:
            (base / "slither-mutate.log").write_text("".join(logs), encoding="utf8")

    return report(parse_log("".join(logs)), contracts, time.monotonic() - started)


def report(mutants: list[Mutant], contracts: list[str], elapsed: float | None) -> int:
    """Prints the table and the unexplained survivors; the exit status."""
    rows = tabulate(mutants, load_equivalents(), contracts)
    print()
    print(render(rows))
    if elapsed is not None:
        tested = sum(1 for m in mutants if m.verdict != "no-compile")
        per = f", {elapsed / tested:.0f} s per compiled mutant with the setup" if tested else ""
        print(f"\n{len(mutants)} mutants in {elapsed / 60:.1f} min{per}")
    survivors = [m for r in rows for m in r.survivors]
    if not survivors:
        return 0
    print("\nSurvivors (add a unit test that fails on each, or list it with a reason in")
    print(f"{EQUIVALENT_FILE.relative_to(ROOT)}):")
    for m in survivors:
        print(f"  {m.contract}:{m.line} [{m.mutator}] '{m.original}' ==> '{m.mutant}'")
    return 1


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--contracts",
        type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
        help=f"comma-separated, from {', '.join(TARGETS)}",
    )
    parser.add_argument(
        "--target-functions",
        help="comma-separated function names, e.g. reveal,_resolve,_judge (every overload);"
        " each contract is mutated only in those of them it declares",
    )
    parser.add_argument("--mutators", help="slither-mutate mutators, e.g. ROR,LOR,CR")
    parser.add_argument(
        "--all",
        action="store_true",
        help="every mutator on the whole of the five contracts (about 5,900 mutants, days)",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT_S,
        help="seconds one mutant's test run may take before it counts as killed",
    )
    parser.add_argument(
        "--budget",
        type=int,
        help="stop the campaign after this many seconds; mutants not reached are not counted",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short run for `make test`: comment out each statement of"
        f" JobMarket.{','.join(QUICK_SCOPE[0].functions or ())}, judged by"
        f" {', '.join(sorted(QUICK_SUITES))}",
    )
    parser.add_argument(
        "--suites",
        type=lambda s: {c.strip() for c in s.split(",") if c.strip()},
        help="judge by these unit suites only (file stems, `Mutants*` for a prefix), e.g."
        " JobMarketAudit,JobMarketFinalize,Attacks: every mutant recompiles every suite, so fewer"
        " suites make a targeted run faster (default: the verdict and money suites for the"
        " default scope, all of contracts/test/unit for a chosen one)",
    )
    parser.add_argument(
        "--rev",
        help="mutate contracts/ as committed at this git revision (e.g. HEAD) instead of the"
        " working tree",
    )
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it and the log")
    parser.add_argument(
        "--from-log",
        type=Path,
        help="judge the slither-mutate.log a --keep run left against the current list of"
        " equivalent mutants, without mutating anything",
    )
    args = parser.parse_args(argv)
    custom = args.contracts or args.target_functions or args.mutators
    if args.quick and custom:
        parser.error(
            "--quick is a fixed scope; leave out --contracts, --target-functions, --mutators"
        )
    if args.quick:
        args.passes = QUICK_SCOPE
        args.suites = args.suites or set(QUICK_SUITES)
    elif args.all or custom:
        contracts = args.contracts or list(TARGETS)
        unknown = [c for c in contracts if c not in TARGETS]
        if unknown:
            parser.error(f"unknown contract {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
        functions = function_names(args.target_functions) if args.target_functions else None
        args.passes = tuple(
            Pass(c, tuple(functions) if functions else None, args.mutators) for c in contracts
        )
    else:
        args.passes = DEFAULT_SCOPE
        args.suites = args.suites or set(VERDICT_SUITES)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD_FLAG]:
        child_main(argv[1:])
        return 0
    args = _parse_args(argv)
    if args.from_log:
        mutants = parse_log(args.from_log.read_text(encoding="utf8"))
        return report(mutants, list(dict.fromkeys(m.contract for m in mutants)), None)
    # A terminated campaign still stops slither-mutate and removes the copy.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return campaign(args)
    except (MutationError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else exc
        print(f"mutate_contracts: could not run the campaign: {detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
