"""Compiled contract artifacts shipped with the SDK, and their export from a forge build.

The SDK is the only place that knows ABIs: every other module asks here. Artifacts are
committed JSON (ABI + creation bytecode) so a requester or provider needs no compiler;
`make artifacts` refreshes them from `forge build` and a test fails when they are stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

CONTRACTS = ("ComputeToken", "ProviderRegistry", "JobMarket")


@dataclass(frozen=True)
class Artifact:
    """One contract's ABI and creation bytecode."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@cache
def load(name: str) -> Artifact:
    """The shipped artifact of contract `name` (one of CONTRACTS)."""
    if name not in CONTRACTS:
        raise KeyError(f"unknown contract {name!r}; the SDK ships {', '.join(CONTRACTS)}")
    text = resources.files(__package__).joinpath("artifacts", f"{name}.json").read_text()
    data = json.loads(text)
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"])


def all_abis() -> list[list[dict[str, Any]]]:
    """The ABIs of every shipped contract (used to decode any revert)."""
    return [load(name).abi for name in CONTRACTS]


def from_forge(out_dir: Path, name: str) -> dict[str, Any]:
    """The artifact of `name` as `forge build` wrote it under `out_dir`."""
    raw = json.loads((out_dir / f"{name}.sol" / f"{name}.json").read_text())
    return {"abi": raw["abi"], "bytecode": raw["bytecode"]["object"]}


def export(out_dir: Path, dest: Path) -> list[Path]:
    """Writes the shipped artifacts from a forge build; returns the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = dest / f"{name}.json"
        path.write_text(json.dumps(from_forge(out_dir, name), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    for p in export(root / "contracts" / "out", Path(__file__).parent / "artifacts"):
        print(p.relative_to(root))
