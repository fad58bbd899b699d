"""The compiled contracts (ABI, bytecode) the SDK ships equal what `forge build` makes of
contracts/src now.

forge compiles contracts/src here, into a private out and cache directory, rather than reading
contracts/out: that directory may be stale (pytest run without `make`, or forge rewriting only the
artifacts whose sources changed, so mtimes cannot tell), and a full `forge build` also compiles
the test tree, which takes a minute with the solcjs facade and fails on any broken test file.
Compiling src alone gives the same bytecode (bytecode_hash = "none") in a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from marketplace.protocol import abis

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = ROOT / "contracts"
FORGE = ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"


@pytest.fixture(scope="module")
def forge_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert FORGE.exists(), "forge not installed: run `npm ci` (or `make bootstrap`)"
    build = tmp_path_factory.mktemp("forge")
    env = {**os.environ, "PATH": f"{FORGE.parent}{os.pathsep}{os.environ['PATH']}"}
    # `src` alone: handlers under test/ are plain .sol files that `--skip test` (*.t.sol) does not
    # skip, and the test tree need not compile for the shipped contracts to be checked. The path
    # goes before `--skip`, which would take it as one more filter.
    cmd = [str(FORGE), "build", "src", "--skip", "test", "--skip", "script"]
    cmd += ["--out", str(build / "out"), "--cache-path", str(build / "cache")]
    proc = subprocess.run(
        cmd, cwd=CONTRACTS_DIR, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"forge build failed:\n{proc.stdout}\n{proc.stderr}"
    return build / "out"


@pytest.mark.parametrize("name", abis.CONTRACTS)
def test_shipped_artifact_equals_forge_build(forge_out: Path, name: str) -> None:
    built = abis.from_forge(forge_out, name)
    shipped_file = ROOT / "marketplace" / "protocol" / "compiled" / f"{name}.json"
    shipped = json.loads(shipped_file.read_text())
    assert shipped["abi"] == built["abi"], f"{name} ABI is stale: run the artifact export"
    assert shipped["bytecode"] == built["bytecode"], f"{name} bytecode is stale"
    assert shipped["linkReferences"] == built["linkReferences"], f"{name} links are stale"
    # The loader returns the same content.
    loaded = abis.load(name)
    assert (loaded.abi, loaded.bytecode, loaded.link_references) == (
        built["abi"],
        built["bytecode"],
        built["linkReferences"],
    )
    assert loaded.bytecode.startswith("0x") and len(loaded.bytecode) > 2


def test_job_market_links_market_lib_at_every_placeholder() -> None:
    art = abis.load("JobMarket")
    assert art.libraries == ["MarketLib"]
    refs = [r for libs in art.link_references.values() for r in libs["MarketLib"]]
    assert refs, "JobMarket should link MarketLib"
    address = "0x" + "ab" * 20
    linked = art.linked({"MarketLib": address})
    assert "__" not in linked
    code = bytes.fromhex(linked[2:])
    for ref in refs:
        assert code[ref["start"] : ref["start"] + ref["length"]] == bytes.fromhex("ab" * 20)
    # Outside the placeholders the linked code is the shipped code.
    assert len(linked) == len(art.bytecode)
    with pytest.raises(abis.LinkError, match="deploy it first"):
        art.linked({})


@pytest.mark.parametrize("name", ["ComputeToken", "ProviderRegistry", "MarketLib"])
def test_other_contracts_need_no_linking(name: str) -> None:
    art = abis.load(name)
    assert art.link_references == {} and "__" not in art.bytecode


def test_unknown_contract_is_a_key_error() -> None:
    with pytest.raises(
        KeyError, match="the SDK ships ComputeToken, ProviderRegistry, JobMarket, MarketLib"
    ):
        abis.load("Nope")
