"""`depin devnet` with real processes: `up --detach` brings Anvil, Redis, the deployment and the
relayer up and records them; `status --json` agrees; `down` leaves no process in any recorded
process group and a second `down` does nothing; a failing step stops what was already started;
the foreground `up` stops everything on SIGTERM; with providers, every agent heartbeats."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from web3 import Web3

from marketplace.devnet.manager import (
    PROVIDER_MAX_UNITS,
    PROVIDER_MIN_EXEC_WINDOW,
    Devnet,
    DevnetConfig,
    DevnetError,
)
from marketplace.devnet.processes import process_alive
from marketplace.devnet.state import DevnetState
from marketplace.protocol.deployment import Deployment

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "marketplace.cli.main", "devnet"]
UP_SECONDS = 60


def _depin(*args: str, timeout: float = UP_SECONDS) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def _assert_groups_gone(pgids: list[int], seconds: float = 30.0) -> None:
    # The detached `up` that started them has exited: init reaps their last zombies, when it
    # gets to them.
    deadline = time.monotonic() + seconds
    for pgid in pgids:
        while True:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"process group {pgid} still exists"
            time.sleep(0.05)


def _kill_leftovers(pgids: list[int]) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def test_up_detached_status_and_down(tmp_path: Path) -> None:
    directory = tmp_path / "devnet"
    up = _depin("up", "--providers", "0", "--dir", str(directory), "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    state = DevnetState.load(directory)
    pgids = [p.pgid for p in state.processes]
    try:
        assert state.phase == "up"
        assert [p.name for p in state.processes] == ["anvil", "redis", "relayer"]
        for p in state.processes:
            assert p.pgid == p.pid and Path(p.log).is_file() and p.command
            assert Path(p.log).parent == directory / "logs"
        assert state.chain_id == 31337 and state.keystore_password == "devnet"
        assert state.deployer["address"] and state.deployer["key"].startswith("0x")
        assert state.requester is not None and Path(state.requester.keystore).is_file()
        assert state.params["challenge_window"] == 10 and state.params["audit_bps"] == 3_000
        # v2 bounds: every window >= 10 s, an odd verifier count, cheating never pays.
        assert state.params["verifiers"] in (1, 3, 5)
        assert state.params["audit_bps"] * (1 + state.params["collateral_multiple"]) >= 10_000
        assert min(v for k, v in state.params.items() if k.endswith("_window")) >= 10

        w3 = Web3(Web3.HTTPProvider(state.rpc_url))
        assert w3.eth.chain_id == 31337
        deployment = Deployment.load(Path(state.deployment_file))
        assert state.deployment["market"] == deployment.market
        assert w3.eth.get_code(Web3.to_checksum_address(deployment.market))

        client = redis.Redis.from_url(state.redis_url, socket_timeout=2)
        assert client.ping()
        client.close()
        healthz = httpx.get(f"{state.api_url}/healthz", timeout=5).json()
        assert healthz["status"] == "ok" and healthz["market"] == deployment.market

        # The Python API over the same directory: the requester is funded.
        devnet = Devnet.attach(directory)
        requester = devnet.requester()
        assert requester.address == state.requester.address
        assert requester.balance_of(requester.address) == 10_000 * 10**18
        assert w3.eth.get_balance(Web3.to_checksum_address(requester.address)) > 0

        status = _depin("status", "--dir", str(directory), "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        data: dict[str, Any] = json.loads(status.stdout)
        assert data["healthy"] is True and data["phase"] == "up"
        assert data["chain"]["head"] >= deployment.block
        assert all(p["alive"] for p in data["processes"])
        assert data["relayer"]["healthz"]["status"] == "ok"
        assert data["relayer"]["status"]["chain_id"] == 31337
        assert data["providers"] == []

        # Supervision of the running devnet: Redis killed with -9 is started again by
        # `supervise_once` on the same port with its append-only data.
        client = redis.Redis.from_url(state.redis_url, socket_timeout=2)
        client.set("kept", "across the crash")
        time.sleep(1.5)  # appendfsync everysec
        old_redis = devnet.kill("redis", signal.SIGKILL)
        pgids.append(old_redis.pgid)
        _wait_for(lambda: not process_alive(old_redis))
        (restart,) = devnet.supervise_once()
        assert restart.name == "redis" and restart.restarts == 1 and restart.delay == 0
        new_redis = DevnetState.load(directory).processes[1]
        pgids.append(new_redis.pgid)
        assert new_redis.name == "redis" and new_redis.pid == restart.pid != old_redis.pid
        _wait_for(lambda: _pings(client))
        assert client.get("kept") == b"across the crash"
        client.close()

        # `depin devnet restart NAME` from another process: the relayer, then Anvil (SIGTERM
        # dumps its state, so the chain comes back whole on the same port and chain id).
        head = w3.eth.block_number
        for name in ("relayer", "anvil"):
            out = _depin("restart", name, "--dir", str(directory), "--json", timeout=90)
            assert out.returncode == 0, out.stdout + out.stderr
            (done,) = json.loads(out.stdout)["restarted"]
            assert done["name"] == name and done["restarts"] == 1
            pgids.append(done["pid"])
        assert w3.eth.chain_id == 31337 and w3.eth.block_number >= head
        assert w3.eth.get_code(Web3.to_checksum_address(deployment.market))
        unknown = _depin("restart", "nope", "--dir", str(directory))
        assert unknown.returncode == 1 and "anvil, redis, relayer" in unknown.stderr
        status = _depin("status", "--dir", str(directory), "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        data = json.loads(status.stdout)
        assert {p["name"]: p["restarts"] for p in data["processes"]} == {
            "anvil": 1,
            "redis": 1,
            "relayer": 1,
        }
        assert data["healthy"] is True
        pgids = [p.pgid for p in DevnetState.load(directory).processes]

        # `depin devnet env`: its exports are all a requester's commands need to find the
        # devnet, its relayer and its funded wallet; the shell form quotes every value.
        exported = _depin("env", "--dir", str(directory), "--json")
        assert exported.returncode == 0, exported.stdout + exported.stderr
        variables = json.loads(exported.stdout)
        assert variables["DEPIN_PROVIDER_HEARTBEAT_INTERVAL"] == "2"
        assert variables["DEPIN_DEVNET_MINTER_KEY"] == state.deployer["key"]
        bare = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
        balance = subprocess.run(
            [sys.executable, "-m", "marketplace.cli.main", "wallet", "balance", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**bare, **variables},
            check=False,
        )
        assert balance.returncode == 0, balance.stdout + balance.stderr
        assert json.loads(balance.stdout)["tokens"] == str(10_000 * 10**18)
        shell = _depin("env", "--dir", str(directory)).stdout.splitlines()
        assert f"export DEPIN_REQUESTER_RPC_URL={state.rpc_url}" in shell
        assert all(line.startswith("export DEPIN_") for line in shell)

        # `depin devnet warp`: the chain clock moves forward by the duration given.
        before = int(w3.eth.get_block("latest")["timestamp"])
        warped = _depin("warp", "9d", "--dir", str(directory), "--json")
        assert warped.returncode == 0, warped.stdout + warped.stderr
        moved = json.loads(warped.stdout)
        assert moved["seconds"] == 9 * 86_400 and moved["before"] >= before
        assert int(w3.eth.get_block("latest")["timestamp"]) >= before + 9 * 86_400
        bad = _depin("warp", "soon", "--dir", str(directory))
        assert bad.returncode == 1 and "'soon' is not a duration" in bad.stderr

        # `up` on a devnet with a dead component (nothing supervises a detached one) starts
        # that component again and leaves the others alone.
        running = {p.name: p.pid for p in DevnetState.load(directory).processes}
        old_relayer = devnet.kill("relayer", signal.SIGKILL)
        _wait_for(lambda: not process_alive(old_relayer))
        repaired = _depin("up", "--providers", "0", "--dir", str(directory), "--detach")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert "repairing the devnet" in repaired.stdout and "starting relayer" in repaired.stdout
        now = {p.name: p.pid for p in DevnetState.load(directory).processes}
        assert now["relayer"] != old_relayer.pid == running["relayer"]
        assert {**now, "relayer": 0} == {**running, "relayer": 0}  # the others untouched
        assert httpx.get(f"{state.api_url}/healthz", timeout=5).status_code == 200
        pgids = [p.pgid for p in DevnetState.load(directory).processes]

        # A second `up` on a running devnet is refused and starts nothing.
        again = _depin("up", "--providers", "0", "--dir", str(directory), "--detach")
        assert again.returncode == 1 and "already runs" in again.stderr
        assert [p.pgid for p in DevnetState.load(directory).processes] == pgids

        head = w3.eth.block_number
        down = _depin("down", "--dir", str(directory), timeout=40)
        assert down.returncode == 0, down.stdout + down.stderr
        # The Redis `supervise_once` started here is this test's child: collect its exit.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(new_redis.pid, 0)
        _assert_groups_gone(pgids)
        after = DevnetState.load(directory)
        assert after.phase == "down" and after.processes == []
        assert (directory / "anvil-state.json").is_file()  # the chain stays on disk
        assert (directory / "logs" / "relayer.log").is_file()

        second = _depin("down", "--dir", str(directory))
        assert second.returncode == 0 and "nothing running" in second.stdout
        status = _depin("status", "--dir", str(directory), "--json")
        assert status.returncode == 1 and json.loads(status.stdout)["healthy"] is False

        # `up` without --fresh resumes the stopped devnet: the same chain, contracts and wallet.
        resumed = _depin("up", "--providers", "0", "--dir", str(directory), "--detach", timeout=120)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "resuming the devnet" in resumed.stdout
        back = DevnetState.load(directory)
        pgids = [p.pgid for p in back.processes]
        assert back.phase == "up" and [p.name for p in back.processes] == [
            "anvil",
            "redis",
            "relayer",
        ]
        assert w3.eth.chain_id == 31337 and w3.eth.block_number >= head
        assert w3.eth.get_code(Web3.to_checksum_address(deployment.market))
        assert requester.balance_of(requester.address) == 10_000 * 10**18
        assert httpx.get(f"{state.api_url}/healthz", timeout=5).status_code == 200
        assert _depin("down", "--dir", str(directory), timeout=40).returncode == 0
        _assert_groups_gone(pgids)

        clean = _depin("down", "--dir", str(directory), "--clean")
        assert clean.returncode == 0 and not directory.exists()
    finally:
        _kill_leftovers(pgids)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _wait_for(ready: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.1)


def _recording_pgids(directory: Path, seen: list[int]) -> Any:
    """A `progress` callback that records every started process group as `up` goes."""

    def progress(_line: str) -> None:
        for p in DevnetState.load(directory).processes:
            if p.pgid not in seen:
                seen.append(p.pgid)

    return progress


def test_a_failing_step_stops_what_was_started(tmp_path: Path) -> None:
    # The relayer's API port is taken: Anvil, Redis and the deployment are up by then.
    directory = tmp_path / "devnet"
    seen: list[int] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        config = DevnetConfig(dir=directory, providers=0, api_port=taken.getsockname()[1])
        try:
            with pytest.raises(DevnetError) as failed:
                Devnet.up(config, progress=_recording_pgids(directory, seen))
        finally:
            _kill_leftovers(seen)
    assert failed.value.step == "relayer"
    assert failed.value.log == directory / "logs" / "relayer.log"
    assert str(failed.value.log) in str(failed.value)
    assert len(seen) == 2  # anvil and redis were running
    _assert_groups_gone(seen)
    state = DevnetState.load(directory)
    assert state.phase == "down" and state.processes == []

    # A binary that does not exist: the step is named and Anvil is stopped.
    second = tmp_path / "second"
    seen = []
    bad = DevnetConfig(dir=second, providers=0, redis_binary=str(tmp_path / "no-redis-server"))
    try:
        with pytest.raises(DevnetError, match="cannot start redis") as failed:
            Devnet.up(bad, progress=_recording_pgids(second, seen))
    finally:
        _kill_leftovers(seen)
    assert failed.value.step == "redis"
    assert len(seen) == 1
    _assert_groups_gone(seen)
    assert DevnetState.load(second).processes == []


def test_foreground_up_stops_everything_on_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "devnet"
    log = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*CLI, "up", "--providers", "0", "--dir", str(directory)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    pgids: list[int] = []
    try:
        deadline = time.monotonic() + UP_SECONDS
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            if (directory / "state.json").exists():
                state = DevnetState.load(directory)
                pgids = [p.pgid for p in state.processes]
                if state.phase == "up" and "Ctrl-C" in log.read_text():
                    break
            time.sleep(0.2)
        # The foreground `up` supervises: Redis killed with -9 is started again at once, the
        # restart logged with its exit code and log, state.json holding the new pid.
        old = state.processes[1]
        assert old.name == "redis"
        os.killpg(old.pgid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, log.read_text()
            new = DevnetState.load(directory).processes[1]
            if new.pid != old.pid and "killed by SIGKILL" in log.read_text():
                break
            time.sleep(0.2)
        pgids.append(new.pgid)
        assert new.restarts == 1 and new.last_exit == -signal.SIGKILL
        assert f"redis was killed by SIGKILL (exit code -9); started again as pid {new.pid}" in (
            log.read_text()
        )
        client = redis.Redis.from_url(state.redis_url, socket_timeout=2)
        _wait_for(lambda: _pings(client))
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert "devnet stopped" in log.read_text()
        _assert_groups_gone([proc.pid, *pgids])
        assert DevnetState.load(directory).processes == []
    finally:
        _kill_leftovers([proc.pid, *pgids])
        if proc.poll() is None:
            proc.wait(timeout=10)


def _provider_commands_exist() -> bool:
    root = Path(__file__).resolve().parents[2]
    if not ((root / "provider/agent.py").exists() and (root / "provider/worker.py").exists()):
        return False
    out = subprocess.run(
        [sys.executable, "-m", "marketplace.cli.main", "provider", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    return " run " in out and " worker " in out


def test_up_with_two_providers_heartbeats_both(tmp_path: Path) -> None:
    if not _provider_commands_exist():
        pytest.skip("`depin provider run` / `depin provider worker` not available yet")
    directory = tmp_path / "devnet"
    seen: list[int] = []
    config = DevnetConfig(dir=directory, providers=2, lazy=1)
    try:
        with Devnet.up(config, progress=_recording_pgids(directory, seen)) as devnet:
            names = [p.name for p in devnet.state.processes]
            assert names == [
                "anvil",
                "redis",
                "relayer",
                "provider-1-agent",
                "provider-1-worker",
                "provider-2-agent",
                "provider-2-worker",
            ]
            assert [p.behavior for p in devnet.state.providers] == ["lazy", "honest"]
            assert [p.queue for p in devnet.state.providers] == [
                "depin-provider-1",
                "depin-provider-2",
            ]
            book = httpx.get(f"{devnet.api_url}/providers/liveness", timeout=5).json()
            live = {p["provider"].lower() for p in book["providers"] if p["live"]}
            assert {a.lower() for a in devnet.provider_addresses().values()} <= live
            market = devnet.owner()
            for address in devnet.provider_addresses().values():
                record = market.provider(address)
                assert record.stake == 1_000 * 10**18
                # v2 terms: each provider's own exec-window floor and unit cap.
                assert (record.min_exec_window, record.max_units) == (
                    PROVIDER_MIN_EXEC_WINDOW,
                    PROVIDER_MAX_UNITS,
                )
            status = devnet.status()
            assert status["healthy"], status
        _assert_groups_gone(seen)
    finally:
        _kill_leftovers(seen)
