"""The devnet's pieces that need no chain: configuration, the state file, the directory guard
and stopping process groups (with `sleep` children)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from marketplace.devnet import processes
from marketplace.devnet.manager import DEVNET_PARAMS, Devnet, DevnetConfig, _prepare_dir
from marketplace.devnet.state import (
    STATE_FILE,
    DevnetState,
    ProcessRecord,
    ProviderRecord,
    WalletRecord,
    write_json_atomic,
)
from marketplace.protocol.errors import ConfigError


def test_behaviors_fill_lazy_then_copycat_then_no_show_then_honest() -> None:
    config = DevnetConfig(providers=6, lazy=1, copycat=2, no_show=1)
    assert config.behaviors() == ["lazy", "copycat", "copycat", "no-show", "honest", "honest"]
    assert DevnetConfig(providers=0).behaviors() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"providers": 2, "lazy": 2, "copycat": 1}, "exceeds --providers"),
        ({"providers": 1, "lazy": -1}, "negative"),
        ({"providers": 1, "workers_per_provider": 0}, "workers-per-provider"),
        ({"providers": 1, "confirmations": 65}, "outside 0-64"),
        ({"providers": 1, "task_time_limit": 0}, "task_time_limit must be at least 1"),
    ],
)
def test_behaviors_reject_impossible_counts(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DevnetConfig(**kwargs).behaviors()  # type: ignore[arg-type]


def test_market_params_take_the_audit_rate_and_respect_contract_bounds() -> None:
    params = DevnetConfig(audit_bps=10_000).market_params()
    assert params == replace(DEVNET_PARAMS, audit_bps=10_000)
    windows = (
        params.challenge_window,
        params.verifier_assign_window,
        params.verifier_exec_window,
        params.reveal_window,
        params.min_exec_window,
        params.reassign_window,
        params.max_accept_window,
        params.max_exec_window,
    )
    assert all(10 <= w <= 30 * 86_400 for w in windows)  # the contract's window bounds
    assert params.problems() == []
    # v2 bounds: an odd verifier count; cheating never pays at the default audit rate.
    assert params.verifiers in (1, 3, 5)
    assert DEVNET_PARAMS.audit_bps * (1 + DEVNET_PARAMS.collateral_multiple) >= 10_000
    assert params.verifier_exec_window >= params.min_exec_window
    # A demo job settles in about a minute: challenge window plus an audit's windows.
    assert params.challenge_window + params.verifier_assign_window + params.reveal_window <= 90
    with pytest.raises(ConfigError, match="audit-rate"):
        DevnetConfig(audit_bps=10_001).market_params()
    floor = -(-10_000 // (1 + DEVNET_PARAMS.collateral_multiple))
    assert DevnetConfig(audit_bps=floor).market_params().audit_bps == floor
    with pytest.raises(ConfigError, match="below the contract's floor"):
        DevnetConfig(audit_bps=floor - 1).market_params()
    with pytest.raises(ConfigError, match="verifiers"):
        DevnetConfig(params=replace(DEVNET_PARAMS, verifiers=2)).market_params()


def _state(tmp_path: Path) -> DevnetState:
    return DevnetState(
        dir=str(tmp_path),
        created="2026-01-01T00:00:00+00:00",
        phase="up",
        rpc_url="http://127.0.0.1:1",
        chain_id=31337,
        processes=[ProcessRecord("anvil", "anvil", 10, 10, 123, "/x.log", ["anvil"])],
        providers=[ProviderRecord("provider-1", "0xabc", "lazy", "/k.json", "depin-provider-1")],
        requester=WalletRecord("0xdef", "/r.json"),
    )


def test_state_round_trips_through_the_file(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.write(tmp_path)
    assert DevnetState.load(tmp_path) == state
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temporary file left


def test_state_load_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="depin devnet up"):
        DevnetState.load(tmp_path)
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="not a devnet state file"):
        DevnetState.load(tmp_path)
    write_json_atomic(tmp_path / STATE_FILE, {**_state(tmp_path).to_json(), "version": 99})
    with pytest.raises(ConfigError, match="version 99"):
        DevnetState.load(tmp_path)


def test_atomic_write_keeps_the_old_file_when_encoding_fails(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "f.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_prepare_dir_guards_foreign_and_stopped_directories(tmp_path: Path) -> None:
    _prepare_dir(tmp_path / "new", fresh=False)  # missing: fine
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no devnet"):
        _prepare_dir(foreign, fresh=True)
    assert (foreign / "notes.txt").exists()

    stopped = tmp_path / "stopped"
    state = _state(stopped)
    state.processes = []
    state.phase = "down"
    state.write(stopped)
    with pytest.raises(ConfigError, match="--fresh"):
        _prepare_dir(stopped, fresh=False)
    _prepare_dir(stopped, fresh=True)
    assert not stopped.exists()


def _sleeper(tmp_path: Path, name: str, role: str, script: str) -> ProcessRecord:
    _proc, record = processes.spawn(
        name,
        role,
        [sys.executable, "-c", script],
        env=dict(os.environ),
        log=tmp_path / f"{name}.log",
    )
    return record


def test_stop_groups_stops_whole_groups_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    # A leader with a child in its group (like a Celery worker's pool), and one ignoring TERM.
    with_child = _sleeper(
        tmp_path,
        "parent",
        "worker",
        "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)",
    )
    stubborn = _sleeper(
        tmp_path,
        "stubborn",
        "relayer",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)",
    )
    assert with_child.pgid == with_child.pid and processes.process_alive(with_child)
    deadline_log = tmp_path / "stubborn.log"
    for _ in range(100):  # the handler is installed before it prints
        if "ready" in deadline_log.read_text():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    left = processes.stop_groups([stubborn, with_child], timeout=0.5)
    assert left == []
    for record in (with_child, stubborn):
        with pytest.raises(ProcessLookupError):
            os.killpg(record.pgid, 0)
        assert not processes.process_alive(record)
    assert processes.stop_groups([stubborn, with_child], timeout=0.5) == []  # idempotent


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    record = _sleeper(tmp_path, "other", "anvil", "import time; time.sleep(60)")
    reused = replace(record, start_ticks=(record.start_ticks or 0) + 1)
    assert not processes.process_alive(reused)
    assert processes.stop_groups([reused], timeout=0.2) == []
    assert processes.process_alive(record)  # untouched
    assert processes.stop_groups([record], timeout=2) == []


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_restart_policy_at_once_then_backoff_to_30_s_then_crash_loop() -> None:
    clock = _Clock()
    policy = processes.RestartPolicy(stable=60, crash_loop=5, clock=clock)
    waits = []
    for _ in range(8):
        assert policy.ready("relayer") is (policy.delay("relayer") == 0)
        waits.append(policy.delay("relayer"))
        clock.now += waits[-1]
        assert policy.ready("relayer")
        policy.restarted("relayer")
        clock.now += 0.5  # it stops again at once
    assert waits == [0, 1, 2, 4, 8, 16, 30, 30]
    assert policy.crash_looping("relayer")
    assert policy.delay("redis") == 0 and not policy.crash_looping("redis")  # per component
    clock.now += 60  # a run of a minute: the next stop is a first one again
    assert policy.delay("relayer") == 0 and policy.ready("relayer")
    assert policy.restarted("relayer") == 1 and not policy.crash_looping("relayer")
    with pytest.raises(ConfigError):
        processes.RestartPolicy(first_delay=0)


def _supervised(tmp_path: Path) -> Devnet:
    """A devnet state that is up with one cheap component (a sleeping Python) under `tmp_path`."""
    _proc, record = processes.spawn(
        "sleeper",
        "worker",
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env=dict(os.environ),
        log=tmp_path / "logs" / "sleeper.log",
    )
    state = _state(tmp_path)
    state.processes = [replace(record, env={"DEPIN_EXAMPLE": "1"})]
    state.write(tmp_path)
    return Devnet.attach(tmp_path)


def test_supervise_once_restarts_a_killed_component_and_records_it(tmp_path: Path) -> None:
    clock = _Clock()
    devnet = _supervised(tmp_path)
    devnet.policy = processes.RestartPolicy(clock=clock)
    first = devnet.state.processes[0]
    try:
        assert devnet.supervise_once() == []  # running: nothing to do
        assert devnet.kill("sleeper", signal.SIGKILL).pid == first.pid
        _gone(first)
        (restart,) = devnet.supervise_once()  # the first stop: restarted at once
        assert restart.name == "sleeper" and restart.old_pid == first.pid
        assert restart.restarts == 1 and restart.delay == 0 and not restart.crash_looping
        assert restart.exit_code is None  # not a child of this Devnet: unknown
        assert "stopped (exit code unknown" in restart.line() and restart.log in restart.line()
        on_disk = DevnetState.load(tmp_path).processes[0]
        assert on_disk.pid == restart.pid != first.pid and on_disk.restarts == 1
        assert on_disk.env == {"DEPIN_EXAMPLE": "1"} and on_disk.command == first.command
        assert processes.process_alive(on_disk)

        # Its own child now: the exit code is known; the second stop waits 1 s.
        devnet.kill("sleeper", signal.SIGKILL)
        _gone(on_disk)
        assert devnet.supervise_once() == []
        clock.now += 1
        (again,) = devnet.supervise_once()
        assert again.exit_code == -signal.SIGKILL and again.delay == 1 and again.restarts == 2
        assert "killed by SIGKILL" in again.line()
        assert DevnetState.load(tmp_path).processes[0].last_exit == -signal.SIGKILL

        # `restart` by name works on a running component; an unknown name says what exists.
        record = devnet.restart("sleeper", timeout=10)
        assert record.restarts == 3 and record.pid != again.pid
        with pytest.raises(ConfigError, match="sleeper"):
            devnet.restart("nope")
        # Nothing is restarted while the devnet is stopping (a `down` elsewhere).
        state = DevnetState.load(tmp_path)
        state.phase = "stopping"
        state.write(tmp_path)
        devnet.kill("sleeper", signal.SIGKILL)
        _gone(record)
        assert devnet.supervise_once() == []
    finally:
        processes.stop_groups(DevnetState.load(tmp_path).processes, timeout=1)


def _gone(record: ProcessRecord) -> None:
    for _ in range(200):
        if not processes.process_alive(record):
            return
        subprocess.run(["sleep", "0.05"], check=True)
    raise AssertionError(f"{record.name} still runs")
