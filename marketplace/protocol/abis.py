"""The contracts' ABIs and creation bytecode shipped with the SDK, and their export from a
forge build.

The SDK is the only place that knows ABIs: `Market` in marketplace.protocol.client reads them
here and every other module goes through it. Each contract is committed JSON (ABI, creation
bytecode and forge's `linkReferences`, under marketplace/protocol/compiled/; "artifact" in this
project means a job's stored input or output blob only) so a requester or provider needs no
compiler; `make artifacts` refreshes them from `forge build` and a test fails when they are
stale.

JobMarket links the external library MarketLib: its creation bytecode holds a 20-byte
placeholder at each offset listed in `link_references`, which `link` replaces with the address
MarketLib was deployed at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

CONTRACTS = ("ComputeToken", "ProviderRegistry", "JobMarket", "MarketLib")

#: forge's linkReferences: source file -> library name -> [{"start": byte offset, "length": 20}].
LinkReferences = dict[str, dict[str, list[dict[str, int]]]]


class LinkError(ValueError):
    """A bytecode cannot be linked: a library address is missing or malformed."""


@dataclass(frozen=True)
class CompiledContract:
    """One contract's ABI and creation bytecode (unlinked when `link_references` is not empty)."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    link_references: LinkReferences = field(default_factory=dict)

    @property
    def libraries(self) -> list[str]:
        """Names of the libraries this bytecode must be linked against, sorted."""
        return sorted({lib for libs in self.link_references.values() for lib in libs})

    def linked(self, libraries: dict[str, str]) -> str:
        """The creation bytecode with every library placeholder replaced by its address."""
        return link(self.bytecode, self.link_references, libraries)


def link(bytecode: str, link_references: LinkReferences, libraries: dict[str, str]) -> str:
    """Replaces each placeholder at the offsets of `link_references` with the address of its
    library from `libraries` (library name -> address); returns 0x-prefixed hex."""
    code = bytearray.fromhex(bytecode_hex(bytecode[2:] if bytecode.startswith("0x") else bytecode))
    for libs in link_references.values():
        for lib, refs in libs.items():
            if lib not in libraries:
                raise LinkError(
                    f"the bytecode links library {lib}; deploy it first and pass its address"
                )
            address = libraries[lib]
            raw = bytes.fromhex(address[2:] if address.startswith("0x") else address)
            if len(raw) != 20:
                raise LinkError(f"{lib} address {address!r} is not 20 bytes")
            for ref in refs:
                start, length = int(ref["start"]), int(ref["length"])
                if length != 20:
                    raise LinkError(f"{lib} link reference of length {length}; expected 20")
                code[start : start + length] = raw
    return "0x" + code.hex()


def bytecode_hex(bytecode: str) -> str:
    """Unprefixed hex with each 40-character placeholder (`__$<hash>$__`) zeroed so it parses;
    `link` then overwrites those bytes."""
    out = []
    i = 0
    while i < len(bytecode):
        if bytecode.startswith("__", i):
            out.append("00" * 20)
            i += 40
        else:
            out.append(bytecode[i])
            i += 1
    return "".join(out)


@cache
def load(name: str) -> CompiledContract:
    """The shipped ABI and bytecode of contract `name` (one of CONTRACTS)."""
    if name not in CONTRACTS:
        raise KeyError(f"unknown contract {name!r}; the SDK ships {', '.join(CONTRACTS)}")
    text = resources.files(__package__).joinpath("compiled", f"{name}.json").read_text()
    data = json.loads(text)
    return CompiledContract(
        name=name,
        abi=data["abi"],
        bytecode=data["bytecode"],
        link_references=data.get("linkReferences", {}),
    )


def all_abis() -> list[list[dict[str, Any]]]:
    """The ABIs of every shipped contract (used to decode any revert)."""
    return [load(name).abi for name in CONTRACTS]


def from_forge(out_dir: Path, name: str) -> dict[str, Any]:
    """The ABI and bytecode of `name` as `forge build` wrote them under `out_dir`."""
    path = out_dir / f"{name}.sol" / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing; run `cd contracts && forge build --skip test --skip script` first"
        ) from None
    return {
        "abi": raw["abi"],
        "bytecode": raw["bytecode"]["object"],
        "linkReferences": raw["bytecode"].get("linkReferences", {}),
    }


def export(out_dir: Path, dest: Path) -> list[Path]:
    """Writes the shipped JSON of every contract from a forge build; returns the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = dest / f"{name}.json"
        path.write_text(json.dumps(from_forge(out_dir, name), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    import sys

    root = Path(__file__).resolve().parents[2]
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "contracts" / "out"
    for p in export(out, Path(__file__).parent / "compiled"):
        print(p.relative_to(root))
