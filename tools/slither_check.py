"""Slither over contracts/: fails on any High or Medium finding that is not triaged in the source.

A finding is triaged when, on the line just above the first line of one of its elements (the
function, statement or variable slither names), the source carries slither's own suppression
comment with a reason after the detector names:

    // slither-disable-next-line reentrancy-no-eth,divide-before-multiply -- why this is safe

Slither reads the same comment and hides the finding; this script asks for every finding
(--show-ignored-findings) and judges the comments itself. A suppression without ` -- reason`, a
`slither-disable-start`/`-end` range or a slither.db.json triage does not count. Low,
informational and optimization findings are only counted. Exit 1: untriaged findings; 2: slither
could not run.

Slither compiles through forge and runs `forge clean` in its target, and forge's build info names a
library outside the Foundry root (contracts/foundry.toml has libs = ["../node_modules"]) under two
paths, which slither cannot resolve. So the analysis runs on a throwaway copy of contracts/<src>
whose remapped libraries are copied into a `_deps/` folder inside it; contracts/out and
contracts/cache are never touched.

    python tools/slither_check.py [--json-out report.json] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"
FORGE_FROM_NPM = ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin"
DEPS = "_deps"
GATED = ("High", "Medium")
IMPACT_ORDER = ("High", "Medium", "Low", "Informational", "Optimization")
DESCRIPTION_LINES = 8

DISABLE_NEXT_LINE = re.compile(r"^\s*//\s*slither-disable-next-line\s+([A-Za-z0-9_,-]+)(.*)$")
REASON = re.compile(r"^\s+--\s+\S")


@dataclass(frozen=True)
class Finding:
    impact: str
    check: str
    location: str  # path:line, relative to the repository root
    description: str
    anchors: tuple[tuple[Path, int], ...]  # (file analysed, first line) of each source element


class SlitherError(RuntimeError):
    pass


def _forge_env() -> dict[str, str]:
    env = dict(os.environ)
    if shutil.which("forge", path=env.get("PATH")) is None and FORGE_FROM_NPM.is_dir():
        env["PATH"] = f"{FORGE_FROM_NPM}{os.pathsep}{env.get('PATH', '')}"
    env["FOUNDRY_PROFILE"] = "default"
    return env


def _forge_config(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        ["forge", "config", "--json"],
        cwd=CONTRACTS,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    config: dict[str, Any] = json.loads(out)
    return config


def _only_solidity(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if not n.endswith(".sol") and not Path(folder, n).is_dir()]


def prepare_copy(work: Path, env: dict[str, str]) -> dict[str, str]:
    """Lays contracts/<src> and every remapped library into `work`; returns forge's overrides."""
    config = _forge_config(env)
    src = str(config.get("src", "src"))
    shutil.copy2(CONTRACTS / "foundry.toml", work / "foundry.toml")
    shutil.copytree(CONTRACTS / src, work / src, ignore=_only_solidity)

    src_dir = (CONTRACTS / src).resolve()
    copied: dict[Path, str] = {}
    remappings: list[str] = []
    for remapping in config.get("remappings", []):
        prefix, _, target = str(remapping).partition("=")
        resolved = (CONTRACTS / target).resolve()
        if resolved.is_relative_to(src_dir):
            remappings.append(f"{prefix}={resolved.relative_to(CONTRACTS.resolve())}/")
            continue
        if resolved not in copied:
            name = re.sub(r"[^A-Za-z0-9]+", "-", prefix.rpartition(":")[2]).strip("-") or "lib"
            while name in copied.values():
                name += "-"
            shutil.copytree(resolved, work / DEPS / name, ignore=_only_solidity)
            copied[resolved] = name
        remappings.append(f"{prefix}={DEPS}/{copied[resolved]}/")

    overrides = {
        "FOUNDRY_LIBS": json.dumps([DEPS]),
        "FOUNDRY_REMAPPINGS": "\n".join(remappings),
    }
    solc = config.get("solc")
    if isinstance(solc, str) and "/" in solc:
        # A path to a compiler (the solcjs facade), relative to contracts/.
        overrides["FOUNDRY_SOLC"] = str((CONTRACTS / solc).resolve())
    return overrides


def run_slither(work: Path, env: dict[str, str]) -> dict[str, Any]:
    report = work.parent / f"{work.name}-slither.json"
    report.unlink(missing_ok=True)
    # Every finding comes back, suppressed or not: this script judges the suppressions itself.
    cmd = [sys.executable, "-m", "slither", ".", "--show-ignored-findings", "--disable-color"]
    proc = subprocess.run(
        [*cmd, "--json", str(report)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if not report.is_file():
        raise SlitherError(f"slither wrote no report (exit {proc.returncode}):\n{proc.stderr}")
    data: dict[str, Any] = json.loads(report.read_text())
    report.unlink()
    if not data.get("success"):
        raise SlitherError(f"slither failed: {data.get('error')}\n{proc.stderr}")
    return data


def _repo_path(relative: str) -> str:
    return relative if relative.startswith(DEPS + "/") else f"contracts/{relative}"


def parse_findings(data: dict[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    for result in data.get("results", {}).get("detectors", []):
        elements = [
            e
            for e in result.get("elements", [])
            if e.get("source_mapping", {}).get("lines")
            and e["source_mapping"].get("filename_absolute")
        ]
        relatives = [str(e["source_mapping"].get("filename_relative", "")) for e in elements]
        if relatives and all(r.startswith(DEPS + "/") for r in relatives):
            continue  # wholly inside a library
        anchors = tuple(
            (Path(e["source_mapping"]["filename_absolute"]), min(e["source_mapping"]["lines"]))
            for e in elements
        )
        # Point at the statement when there is one, else at the first element.
        shown = next((e for e in elements if e.get("type") == "node"), None)
        shown = shown or (elements[0] if elements else None)
        location = "?"
        if shown is not None:
            sm = shown["source_mapping"]
            location = f"{_repo_path(str(sm['filename_relative']))}:{min(sm['lines'])}"
        findings.append(
            Finding(
                impact=str(result.get("impact")),
                check=str(result.get("check")),
                location=location,
                description=str(result.get("description", "")).strip(),
                anchors=anchors,
            )
        )
    return findings


class Triage:
    """Reads slither-disable-next-line comments from the analysed sources."""

    def __init__(self) -> None:
        self._lines: dict[Path, list[str]] = {}

    def _line(self, path: Path, number: int) -> str:
        if path not in self._lines:
            try:
                self._lines[path] = path.read_text(encoding="utf8").splitlines()
            except OSError:
                self._lines[path] = []
        lines = self._lines[path]
        return lines[number - 1] if 1 <= number <= len(lines) else ""

    def status(self, finding: Finding) -> str:
        """'triaged', 'no-reason' (suppressed without a reason) or 'open'."""
        state = "open"
        for path, first in finding.anchors:
            match = DISABLE_NEXT_LINE.match(self._line(path, first - 1))
            if not match:
                continue
            detectors = {d.strip() for d in match.group(1).split(",") if d.strip()}
            if finding.check not in detectors and "all" not in detectors:
                continue
            if REASON.match(match.group(2)):
                return "triaged"
            state = "no-reason"
        return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json-out", type=Path, help="also write slither's JSON report here")
    parser.add_argument("--work-dir", type=Path, help="analyse in this folder and keep it")
    args = parser.parse_args(argv)

    started = time.monotonic()
    env = _forge_env()
    with tempfile.TemporaryDirectory(prefix="slither-") as tmp:
        work: Path = args.work_dir.resolve() if args.work_dir else Path(tmp) / "contracts"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        try:
            env.update(prepare_copy(work, env))
            data = run_slither(work, env)
        except (SlitherError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else exc
            print(f"slither: could not analyse contracts/: {detail}", file=sys.stderr)
            return 2
        if args.json_out:
            args.json_out.write_text(json.dumps(data, indent=1))
        findings = parse_findings(data)
        triage = Triage()
        statuses = [(f, triage.status(f)) for f in findings]

    counts = Counter(f.impact for f in findings)
    summary = ", ".join(f"{counts[i]} {i}" for i in IMPACT_ORDER if counts[i])
    gated = [(f, s) for f, s in statuses if f.impact in GATED]
    open_ = [(f, s) for f, s in gated if s != "triaged"]
    elapsed = time.monotonic() - started
    print(
        f"slither: {len(findings)} findings in contracts/ ({summary or 'none'}); "
        f"High/Medium: {len(gated) - len(open_)} triaged, {len(open_)} not ({elapsed:.0f} s)"
    )
    if not open_:
        return 0
    rank = {impact: n for n, impact in enumerate(IMPACT_ORDER)}
    for finding, state in sorted(open_, key=lambda fs: (rank[fs[0].impact], fs[0].location)):
        note = "  [suppressed without a reason]" if state == "no-reason" else ""
        print(f"\n{finding.impact} {finding.check} {finding.location}{note}")
        lines = finding.description.splitlines()
        for line in lines[:DESCRIPTION_LINES]:
            print(f"    {line}")
        if len(lines) > DESCRIPTION_LINES:
            print(f"    ... ({len(lines) - DESCRIPTION_LINES} more lines: --json-out has them all)")
    print(
        "\nTriage each one in the .sol source, on the line above the flagged function, statement"
        " or variable:\n    // slither-disable-next-line <detector> -- <one-line reason>",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
