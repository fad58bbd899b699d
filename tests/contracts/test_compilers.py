"""One compiler for every tool: ape-solidity (through py-solc-x) compiles the contracts with the
project's solc facade, and the ABIs it produces equal the ones forge built and the SDK ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ape
import pytest
import solcx

from marketplace.protocol import abis

FACADE = Path(__file__).resolve().parents[2] / "tools" / "solc" / "solc-v0.8.37"


def _signature(entry: dict[str, Any]) -> tuple[str, str, str]:
    def types(params: list[dict[str, Any]]) -> str:
        return ",".join(
            f"({types(p['components'])}){p['type'][5:]}"
            if p["type"].startswith("tuple")
            else p["type"]
            for p in params
        )

    return entry["type"], entry.get("name", ""), types(entry.get("inputs", []))


def test_py_solc_x_uses_the_project_facade() -> None:
    assert solcx.install.get_executable("0.8.37") == FACADE


@pytest.mark.parametrize("name", abis.CONTRACTS)
def test_ape_compiled_abi_equals_shipped_abi(name: str) -> None:
    # ape-solidity compiles a contract that links external libraries (JobMarket: MarketLib) only
    # once it knows their deployed addresses.
    for library in abis.load(name).libraries:
        deployed = ape.accounts.test_accounts[0].deploy(getattr(ape.project, library))
        ape.compilers.solidity.add_library(deployed)
    contract_type = getattr(ape.project, name).contract_type
    ape_abi = [e.model_dump(mode="json", by_alias=True) for e in contract_type.abi]
    shipped = abis.load(name).abi
    assert sorted(map(_signature, ape_abi)) == sorted(map(_signature, shipped))
