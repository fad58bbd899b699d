"""The artifacts the SDK ships equal what `forge build` produces from contracts/src now.

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

from marketplace.protocol import artifacts

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = ROOT / "contracts"
FORGE = ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"


@pytest.fixture(scope="module")
def forge_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert FORGE.exists(), "forge not installed: run `npm ci` (or `make bootstrap`)"
    build = tmp_path_factory.mktemp("forge")
    env = {**os.environ, "PATH": f"{FORGE.parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [str(FORGE), "build", "--skip", "test", "--skip", "script"]
    cmd += ["--out", str(build / "out"), "--cache-path", str(build / "cache")]
    proc = subprocess.run(
        cmd, cwd=CONTRACTS_DIR, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"forge build failed:\n{proc.stdout}\n{proc.stderr}"
    return build / "out"


@pytest.mark.parametrize("name", artifacts.CONTRACTS)
def test_shipped_artifact_equals_forge_build(forge_out: Path, name: str) -> None:
    built = artifacts.from_forge(forge_out, name)
    shipped_file = ROOT / "marketplace" / "protocol" / "artifacts" / f"{name}.json"
    shipped = json.loads(shipped_file.read_text())
    assert shipped["abi"] == built["abi"], f"{name} ABI is stale: run the artifact export"
    assert shipped["bytecode"] == built["bytecode"], f"{name} bytecode is stale"
    # The loader returns the same content.
    loaded = artifacts.load(name)
    assert (loaded.abi, loaded.bytecode) == (built["abi"], built["bytecode"])
    assert loaded.bytecode.startswith("0x") and len(loaded.bytecode) > 2


def test_unknown_contract_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="the SDK ships ComputeToken, ProviderRegistry, JobMarket"):
        artifacts.load("Nope")
