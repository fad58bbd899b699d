"""The requester and provider guides (docs/guide-*.md) run as written.

Each guide's ```sh blocks, in order, run in one `bash -euo pipefail` process, as a reader pasting
them into one shell would: in a scratch directory standing for the checkout's root (its `.venv`
is this checkout's), with HOME and the XDG directories inside the test's temporary directory.
The test then asks the devnet, with `depin ... --json` in that same shell, what the guide
achieved: a settled job with a verified result, credits withdrawn; a job executed by the new
provider, its earnings and its stake back in its wallet. Those checks run just before the
guide's last block, the one that stops the devnet, since a stopped devnet answers nothing; after
it, nothing the guide started may still run. Whatever happens, everything is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from safetensors.numpy import load_file

from marketplace.devnet.processes import group_alive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ANVIL_BIN = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin"
TOKEN = 10**18
#: What the faucet mints to a new wallet (`depin wallet faucet` default).
FAUCET_TOKENS = 1_000 * TOKEN
#: The most one guide may take, devnet start and stop included: a guard against a hang. Each
#: took 2.5 to 4 minutes on two shared cores, and up to 10 when three other test runs shared
#: them (every command pays seconds of imports, which a loaded machine multiplies).
GUIDE_SECONDS = 900

_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def sh_blocks(markdown: str) -> list[str]:
    """The bodies of the ```sh blocks of `markdown`, in order; other blocks are not commands."""
    return [m.group(1) for m in _SH_BLOCK.finditer(markdown)]


@dataclass
class GuideRun:
    """What a guide's run left: its exit status, output and command trace, and the checks'
    JSON by name."""

    returncode: int
    output: str
    trace: str
    checks: dict[str, Any]

    def tail(self, chars: int = 6_000) -> str:
        # "++" lines trace what a command substitution ran: noise next to the guide's commands.
        commands = "\n".join(ln for ln in self.trace.splitlines() if not ln.startswith("++"))
        return f"{self.output[-chars:]}\n--- commands, by second started:\n{commands[-2_000:]}"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
    home = tmp / "home"
    for name, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_STATE_HOME", ".local/state"),
    ):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(home / sub)
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(ROOT / ".venv" / "bin"), str(ANVIL_BIN), env["PATH"]]),
        HF_HUB_OFFLINE="1",
        GUIDE_CHECKS=str(tmp / "checks"),
        GUIDE_TRACE=str(tmp / "guide.trace"),
        COLUMNS="100",
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def _stop_block(blocks: list[str]) -> int:
    """Index of the block that stops the devnet: the checks go just before it."""
    for i in range(len(blocks) - 1, -1, -1):
        if "depin devnet down" in blocks[i]:
            return i
    raise AssertionError("the guide never stops its devnet (`depin devnet down`)")


def _wait_gone(pgids: list[int], seconds: float) -> list[int]:
    """The process groups of `pgids` still alive after waiting up to `seconds`."""
    deadline = time.monotonic() + seconds
    alive = [g for g in pgids if group_alive(g)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [g for g in alive if group_alive(g)]
    return alive


def _cleanup(tmp: Path, env: dict[str, str], script_pgid: int | None) -> None:
    """Stops what a guide may have left running: its background processes (they share the
    script's process group) and every devnet under the temporary directory."""
    if script_pgid is not None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not group_alive(script_pgid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(script_pgid, sig)
            _wait_gone([script_pgid], 10)
    for state in (tmp / "home").rglob("state.json"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "marketplace.cli.main",
                "devnet",
                "down",
                "--dir",
                str(state.parent),
            ],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def run_guide(guide: str, checks: str, tmp: Path) -> GuideRun:
    """Runs the ```sh blocks of docs/`guide` in one bash process, with `checks` (bash lines that
    write `$GUIDE_CHECKS/NAME.json`) before the block that stops the devnet. Asserts that the
    guide leaves nothing running."""
    blocks = sh_blocks((ROOT / "docs" / guide).read_text())
    assert blocks, f"docs/{guide} has no ```sh blocks"
    stop = _stop_block(blocks)
    # The devnet's process groups, to check that the guide's stop leaves none running.
    checks += '\ncp devnet/state.json "$GUIDE_CHECKS/devnet.json"\n'
    # The trace (each command with the second it started) goes to a file of its own, so the
    # output stays the reader's and a failure names the command that failed and when.
    trace = "exec 9>\"$GUIDE_TRACE\"; BASH_XTRACEFD=9; PS4='+ ${SECONDS}s '; set -x\n"
    script = "\n".join([trace, *blocks[:stop], checks, *blocks[stop:]])
    env = _env(tmp)
    (tmp / "checks").mkdir()
    # The scratch directory stands for the checkout's root: the guide activates `.venv` there.
    checkout = tmp / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(ROOT / ".venv")
    (tmp / "guide.sh").write_text(script)
    log = tmp / "guide.log"
    pgid: int | None = None
    try:
        with log.open("w") as out:
            # A session of its own: the guide's background processes stay in its process group,
            # where the cleanup finds them; the devnet's processes have groups of their own.
            proc = subprocess.Popen(
                ["bash", "-euo", "pipefail", str(tmp / "guide.sh")],
                cwd=checkout,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            pgid = proc.pid
            try:
                returncode = proc.wait(timeout=GUIDE_SECONDS)
            except subprocess.TimeoutExpired:
                returncode = -1
        output = log.read_text()
        if returncode == -1:
            output += f"\n[test] the guide ran past {GUIDE_SECONDS} s and was stopped"
        trace_file = tmp / "guide.trace"
        trace = trace_file.read_text() if trace_file.exists() else ""
        run = GuideRun(returncode=returncode, output=output, trace=trace, checks={})
        assert run.returncode == 0, f"docs/{guide} failed:\n{run.tail()}"
        run.checks = {p.stem: json.loads(p.read_text()) for p in (tmp / "checks").glob("*.json")}
        devnet_groups = [p["pgid"] for p in run.checks["devnet"]["processes"]]
        left = _wait_gone([pgid, *devnet_groups], 30)
        assert not left, f"docs/{guide} left processes running (groups {left}):\n{run.tail()}"
        return run
    finally:
        _cleanup(tmp, env, pgid)


REQUESTER_CHECKS = """
P="--wallet alice --password-file password.txt"
depin job status 1 $P --json > "$GUIDE_CHECKS/job.json"
depin job result 1 $P --json --out "$GUIDE_CHECKS/result.safetensors" > "$GUIDE_CHECKS/result.json"
depin wallet balance --wallet alice --json > "$GUIDE_CHECKS/balance.json"
cp result.safetensors "$GUIDE_CHECKS/guide-result.safetensors"
"""


def test_requester_guide_pays_for_a_verified_job_and_withdraws_the_rest(tmp_path: Path) -> None:
    run = run_guide("guide-requester.md", REQUESTER_CHECKS, tmp_path)

    job = run.checks["job"]
    assert job["state"] == "settled" and job["result_available"], job
    result = run.checks["result"]
    assert result["ok"] and not result["rejected"], result
    assert result["outputs"]["embeddings"]["shape"] == [3, 384]
    # The file the guide's `--wait --out` wrote is the result verified again here.
    checks = tmp_path / "checks"
    mine = load_file(checks / "guide-result.safetensors")["embeddings"]
    again = load_file(checks / "result.safetensors")["embeddings"]
    assert mine.shape == (3, 384) and (mine == again).all()

    # Credits withdrawn: none left, and the wallet holds more than the faucet's tokens less
    # the escrow, which it would without the refund.
    balance = run.checks["balance"]
    escrow = int(job["escrow"])
    assert int(balance["credits"]) == 0
    assert FAUCET_TOKENS - escrow < int(balance["tokens"]) < FAUCET_TOKENS, (balance, escrow)


PROVIDER_CHECKS = """
P="--wallet gpu1 --password-file password.txt"
depin provider status $P --json > "$GUIDE_CHECKS/provider.json"
depin job status 1 --json > "$GUIDE_CHECKS/job.json"
"""


def test_provider_guide_earns_withdraws_and_takes_its_stake_back(tmp_path: Path) -> None:
    run = run_guide("guide-provider.md", PROVIDER_CHECKS, tmp_path)

    provider = run.checks["provider"]
    me = provider["address"]
    job = run.checks["job"]
    assert job["state"] == "settled", job
    executors = [p["provider"] for p in job["participants"] if p["executor"]]
    assert executors == [me], (executors, me)
    assert provider["jobs_done"] >= 1 and provider["jobs_slashed"] == 0, provider
    # Everything withdrawn: earnings and the unbonded stake are back in the wallet, which now
    # holds more than the faucet gave it.
    assert Decimal(provider["stake"]) == 0 and Decimal(provider["earnings"]) == 0, provider
    assert provider["unbonding"] is None, provider
    assert Decimal(provider["wallet"]) * TOKEN > FAUCET_TOKENS, provider
    # This guide's price is below the built-in providers' ask: the job cleared at it.
    assert int(job["clearing_price"]) == TOKEN // 2_000, job
