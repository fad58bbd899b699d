"""The one-command devnet: Anvil, Redis, the contracts, the relayer and N provider agents with
their Celery workers, on one machine (DESIGN section 5).

    with Devnet.up(DevnetConfig(dir=tmp, providers=2)) as devnet:
        market = devnet.requester()          # a Market bound to the funded requester key
        market.create_job(...)
        devnet.status()["healthy"]

`Devnet.up` starts, in order: Anvil (state kept in `<dir>/anvil-state.json`), a Redis server
(append-only file in `<dir>/redis`), the deployment (`<dir>/deployment.json`), the relayer, then
per provider a funded, registered and staked key with its agent and one Celery worker, and a
funded requester wallet. Every child runs in its own process group with its output in
`<dir>/logs/<name>.log`; `<dir>/state.json` records them after every step, so `down` (here or
in another process, `Devnet.attach(dir).down()`) can stop whatever was started, even by an `up`
that crashed.

Supervision: `supervise_once()` (the foreground `depin devnet up` calls it twice a second)
starts again every component that stopped, as `processes.RestartPolicy` says (at once, then
1, 2, 4 .. 30 s while it keeps stopping; reported as crash-looping after 5 in a row), and
records the new pid in state.json. `restart(name)` restarts one component of a running devnet
from any process (`depin devnet restart NAME`), `kill(name, sig)` signals one (fault injection).
Component names, in start order (`COMPONENTS` explains each):

    anvil                 the chain; restarted on the same port and chain id from
                          anvil-state.json (dumped every 10 s and on a clean stop), so after a
                          crash the chain comes back as of its last dump, up to ~10 s shorter
    redis                 the Celery broker; same port, same append-only file in <dir>/redis
    relayer               `depin relayer run`: listener, matcher, keeper, submitter and the
                          HTTP API (artifacts, heartbeats, jobs) in one process
    provider-N-agent      provider N's agent (`depin provider run`)
    provider-N-worker     provider N's Celery worker (`depin provider worker`), pool included

A restarted process is the same command with the same settings, its output appended to the
same log. state.json is read and written under a lock (<dir>/.state.lock), so a foreground
`up` and a `restart` from another shell never undo each other's pids.

Devnet only: the keystores under `<dir>/keys/` share the password "devnet" and the state file
holds the deployer key (the token owner), so the faucet can mint. Never reuse these keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import redis
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.types import RPCEndpoint

from marketplace.devnet import processes
from marketplace.devnet.anvil import anvil_binary, free_port, funded_account
from marketplace.devnet.processes import RestartPolicy
from marketplace.devnet.state import (
    STATE_FILE,
    DevnetState,
    ProcessRecord,
    ProviderRecord,
    WalletRecord,
)
from marketplace.protocol.client import Market, ProviderTerms
from marketplace.protocol.deployment import Deployment, MarketParams, deploy
from marketplace.protocol.errors import ConfigError, DepinError
from marketplace.protocol.keys import load_keystore, write_keystore
from marketplace.protocol.relayer_http import RelayerClient
from marketplace.protocol.settings import RELAYER_DB_FILE, sqlite_url

__all__ = [
    "BEHAVIORS",
    "COMPONENTS",
    "DEVNET_PARAMS",
    "DEVNET_PASSWORD",
    "Devnet",
    "DevnetConfig",
    "DevnetError",
    "Restart",
]

log = logging.getLogger(__name__)

TOKEN = 10**18
#: Password of every devnet keystore. Devnet only: the keys hold nothing of value.
DEVNET_PASSWORD = "devnet"
CHAIN_ID = 31337
PRICE_PER_UNIT = 10**15
PROVIDER_STAKE = 1_000 * TOKEN
REQUESTER_TOKENS = 10_000 * TOKEN
#: scrypt work factor of the devnet keystores: low, so services start fast. Devnet only.
KEYSTORE_ITERATIONS = 2**12
#: Windows short enough that a demo job settles in about a minute (each at least the contract's
#: 10 s floor); 30 % of single-replica jobs audited (the floor at a collateral multiple of 10 is
#: 9.1 %: auditBps x (1 + collateralMultiple) >= 10000), by 3 drawn verifiers.
DEVNET_PARAMS = MarketParams(
    audit_bps=3_000,
    verifiers=3,
    collateral_multiple=10,
    challenge_window=10,
    verifier_assign_window=30,
    verifier_exec_window=120,
    reveal_window=30,
    min_exec_window=20,
    reassign_window=60,
)
#: Terms every devnet provider registers with: the shortest exec window it accepts (the
#: requester's default is an hour) and the most units per job.
PROVIDER_MIN_EXEC_WINDOW = 60
PROVIDER_MAX_UNITS = 1_000_000
BEHAVIORS = ("honest", "lazy", "copycat", "no-show")
#: Seconds between provider heartbeats (relayer and agents agree on it).
HEARTBEAT_INTERVAL = 2
#: What each component role runs; `kill` and `restart` take any name in state.json.
COMPONENTS: dict[str, str] = {
    "anvil": "the chain (restarts from anvil-state.json, same port and chain id)",
    "redis": "the Celery broker (restarts on the same port with its append-only file)",
    "relayer": "listener, matcher, keeper, submitter and the HTTP API, in one process",
    "agent": "provider-N-agent: a provider's chain watcher, committer and revealer",
    "worker": "provider-N-worker: a provider's Celery worker and its pool processes",
}
#: The state file's lock, held while it is read, changed and written.
LOCK_FILE = ".state.lock"


class DevnetError(DepinError, RuntimeError):
    """A step of `up` failed (everything started before it was stopped), or `down` left a
    process running. `step` names the step, `log` the log file to read."""

    def __init__(self, message: str, *, step: str = "", log: Path | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.log = log


@dataclass(frozen=True)
class DevnetConfig:
    """What `Devnet.up` starts. The binaries and ports are for tests; None picks the default."""

    dir: Path = Path(".devnet")
    #: Provider agents (each with its Celery worker).
    providers: int = 2
    #: The first `lazy` providers are lazy, the next `copycat` copycats, the next `no_show`
    #: no-shows; the rest honest (DEPIN_PROVIDER_BEHAVIOR).
    lazy: int = 0
    copycat: int = 0
    no_show: int = 0
    #: Jobs each provider's Celery worker runs at once (its --concurrency and the capacity the
    #: agent announces).
    workers_per_provider: int = 1
    #: Share of single-replica jobs audited, in basis points.
    audit_bps: int = DEVNET_PARAMS.audit_bps
    #: Market parameters; DEVNET_PARAMS with `audit_bps` when None.
    params: MarketParams | None = None
    #: Seconds between blocks (interval mining only, as on a real chain); None mines a block
    #: per transaction plus one every second, so deadlines pass on an idle chain.
    block_time: float | None = None
    #: Blocks the relayer and the agents leave behind the head before applying an event.
    confirmations: int = 0
    #: Wake the relayer and the agents on new blocks (WebSocket) and finished tasks; False
    #: makes them poll only (DEPIN_*_WS_URL=off), the baseline of bench/e2e.py.
    wake_on_events: bool = True
    #: Seconds one task may run in a provider's worker before Celery kills it (the agent
    #: then runs it again, up to the worker's crash budget): raise it for jobs bigger than the
    #: demo's, e.g. one shard of a 10,000-sentence corpus on a loaded CPU.
    task_time_limit: int = 300
    #: Seconds between Anvil's dumps of the chain to disk: a crash of Anvil loses at most
    #: this much of the chain (and `make chaos` rolls the chain back to the last dump).
    state_interval: int = 10
    #: Wipe a stopped devnet found in `dir` instead of refusing to start.
    fresh: bool = False
    #: Wait until every provider agent heartbeats to the relayer.
    wait_for_providers: bool = True
    #: Seconds each step may take to become healthy.
    timeout: float = 60.0
    python: str = sys.executable
    anvil_binary: str | None = None
    redis_binary: str | None = None
    anvil_port: int | None = None
    redis_port: int | None = None
    api_port: int | None = None

    def behaviors(self) -> list[str]:
        """The behavior of provider 1..N, in order."""
        counts = (self.lazy, self.copycat, self.no_show)
        if self.providers < 0 or min(counts) < 0:
            raise ConfigError("provider counts must not be negative")
        if sum(counts) > self.providers:
            raise ConfigError(
                f"--lazy + --copycat + --no-show ({sum(counts)}) exceeds --providers "
                f"({self.providers}); raise --providers"
            )
        if self.workers_per_provider < 1:
            raise ConfigError("--workers-per-provider must be at least 1")
        if self.block_time is not None and not 0.1 <= self.block_time <= 60:
            raise ConfigError(
                f"--block-time {self.block_time:g} is outside 0.1-60 s; give a block time a "
                "chain could have, or leave it out for a block per transaction"
            )
        if not 0 <= self.confirmations <= 64:
            raise ConfigError(f"--confirmations {self.confirmations} is outside 0-64")
        if self.task_time_limit < 1:
            raise ConfigError("task_time_limit must be at least 1 second")
        if self.state_interval < 1:
            raise ConfigError("state_interval must be at least 1 second")
        out = ["lazy"] * self.lazy + ["copycat"] * self.copycat + ["no-show"] * self.no_show
        return out + ["honest"] * (self.providers - len(out))

    def market_params(self) -> MarketParams:
        """The deployment's parameters, checked against the contract's bounds (ConfigError
        naming the fix otherwise)."""
        if self.params is not None:
            self.params.check()
            return self.params
        if not 0 <= self.audit_bps <= 10_000:
            raise ConfigError(f"--audit-rate {self.audit_bps} is not between 0 and 10000 bps")
        params = replace(DEVNET_PARAMS, audit_bps=self.audit_bps)
        floor = -(-10_000 // (1 + params.collateral_multiple))
        if self.audit_bps < floor:
            raise ConfigError(
                f"--audit-rate {self.audit_bps} is below the contract's floor of {floor} bps at a "
                f"collateral multiple of {params.collateral_multiple} (auditBps x (1 + "
                "collateralMultiple) >= 10000, so cheating never pays); raise it"
            )
        params.check()
        return params


@dataclass(frozen=True)
class Restart:
    """One component started again: by the supervisor after it stopped, or on request."""

    name: str
    role: str
    #: The pid before and after.
    old_pid: int
    pid: int
    #: Exit code of the process that stopped (negative: the signal that killed it); None when
    #: it was still running (a requested restart) or not a child of this process.
    exit_code: int | None
    #: Restarts of this component so far (state.json's `restarts`).
    restarts: int
    #: Seconds the supervisor waited before this restart (its backoff).
    delay: float
    #: The component keeps stopping (RestartPolicy.crash_loop restarts in a row).
    crash_looping: bool
    log: str
    #: Restarted on request (`restart`), not because it stopped.
    requested: bool = False

    def line(self) -> str:
        """The one line a restart is reported with."""
        if self.requested:
            how = "was restarted on request"
        elif self.exit_code is None:
            how = "stopped (exit code unknown: not started by this process)"
        elif self.exit_code < 0:
            how = f"was killed by {_signal_name(-self.exit_code)} (exit code {self.exit_code})"
        else:
            how = f"exited with code {self.exit_code}"
        text = (
            f"{self.name} {how}; started again as pid {self.pid} (restart {self.restarts}"
            + (f", after {self.delay:.0f} s backoff" if self.delay else "")
            + f"); log {self.log}"
        )
        if self.crash_looping:
            text = (
                f"{self.name} is CRASH-LOOPING ({self.restarts} restarts, each within a minute "
                f"of the last): {text}; read the log and fix the cause, or "
                f"`depin devnet down`"
            )
        return text


class _Done(NamedTuple):
    record: ProcessRecord
    #: None when nothing was restarted (another process already had).
    restart: Restart | None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a child: ours without any DEPIN_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPIN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None:
        return ""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(text)


class Devnet:
    """A devnet described by its state file; started by `up` or found by `attach`."""

    def __init__(
        self, directory: Path, state: DevnetState, *, policy: RestartPolicy | None = None
    ) -> None:
        self.dir = directory
        self.state = state
        self._popen: dict[int, subprocess.Popen[bytes]] = {}
        self._w3: Web3 | None = None
        #: When the supervisor restarts a stopped component (`supervise_once`).
        self.policy = policy or RestartPolicy()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def up(
        cls, config: DevnetConfig | None = None, *, progress: Callable[[str], None] | None = None
    ) -> Devnet:
        """Starts a devnet in `config.dir`; on any failure stops what it started and raises
        DevnetError naming the step and its log. `progress` receives one line per step."""
        config = config or DevnetConfig()
        behaviors = config.behaviors()
        params = config.market_params()
        directory = config.dir.expanduser().resolve()
        if not config.fresh and _resumable(directory):
            return cls._resume(directory, config, progress or (lambda _line: None))
        _prepare_dir(directory, fresh=config.fresh)
        devnet = cls(
            directory,
            DevnetState(dir=str(directory), created=_now(), keystore_password=DEVNET_PASSWORD),
        )
        say = progress or (lambda _line: None)
        try:
            devnet._start(config, behaviors, params, say)
        except BaseException as exc:
            left = devnet._stop_all()
            if left and isinstance(exc, DevnetError):
                raise DevnetError(
                    f"{exc}; could not stop {_names(left)}", step=exc.step, log=exc.log
                ) from exc
            raise
        return devnet

    @classmethod
    def _resume(cls, directory: Path, config: DevnetConfig, say: Callable[[str], None]) -> Devnet:
        """Starts again what is not running of the devnet in `directory`: every component
        `down` stopped (the chain from anvil-state.json, Redis from its append-only file, the
        same keys and settings), or, while it is up, the components that died. Refuses a devnet
        whose every component runs."""
        devnet = cls.attach(directory)
        with devnet._locked():
            state = devnet.state
            if state.phase == "up" and state.processes:
                records = list(state.processes)
                if all(processes.process_alive(r) for r in records):
                    raise ConfigError(
                        f"a devnet already runs in {directory} and every component is alive "
                        f"(`depin devnet status --dir {directory}`); stop it with "
                        f"`depin devnet down --dir {directory}`, or pass --fresh after that "
                        "for a new one"
                    )
                what = "repairing"
            else:
                records = list(state.stopped)
                what = "resuming"
            state.phase = "up"
            state.processes = records
            devnet._write()
        dead = [r for r in records if not processes.process_alive(r)]
        say(f"{what} the devnet in {directory}: starting {', '.join(r.name for r in dead)}")
        try:
            for record in dead:
                devnet._restart(record.name, wait=True, timeout=config.timeout, delay=0.0)
                say(f"{record.name} started again")
            if devnet.state.providers and config.wait_for_providers:
                devnet._wait_providers(config.timeout)
                say(f"providers {len(devnet.state.providers)} live")
        except BaseException:
            devnet._stop_all()
            raise
        return devnet

    @classmethod
    def attach(cls, directory: Path = Path(".devnet")) -> Devnet:
        """The devnet whose state is in `directory` (started elsewhere, e.g. `up --detach`)."""
        directory = directory.expanduser().resolve()
        return cls(directory, DevnetState.load(directory))

    def down(self, *, clean: bool = False, timeout: float = 10.0) -> None:
        """Stops every recorded process group (last started first: SIGTERM, up to `timeout`
        seconds, then SIGKILL) and forgets the pids. Chain state and logs stay on disk unless
        `clean`. Stopping a stopped devnet does nothing."""
        with self._locked():
            if self.state.phase == "up":
                # A supervisor (a foreground `up` elsewhere) must not restart what stops now.
                self.state.phase = "stopping"
                # Kept so that `up` can start the same components again (resume).
                self.state.stopped = list(self.state.processes)
                self._write()
        left = self._stop_all(timeout=timeout)
        if left:
            raise DevnetError(
                f"could not stop {_names(left)}; kill their process groups by hand "
                f"(pgids {[r.pgid for r in left]})",
                step="down",
            )
        if clean and (self.dir / STATE_FILE).exists():
            shutil.rmtree(self.dir)

    def __enter__(self) -> Devnet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # ------------------------------------------------------------------ clients

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            self._w3 = Web3(Web3.HTTPProvider(self.state.rpc_url, request_kwargs={"timeout": 10}))
        return self._w3

    @property
    def deployment(self) -> Deployment:
        return Deployment.load(Path(self.state.deployment_file))

    @property
    def deployment_file(self) -> Path:
        return Path(self.state.deployment_file)

    @property
    def api_url(self) -> str:
        return self.state.api_url

    def owner(self) -> Market:
        """The deployment driven by the deployer key (token owner: mints, sets parameters)."""
        return Market(self.w3, self.deployment, Account.from_key(self.state.deployer["key"]))

    def requester_account(self) -> LocalAccount:
        if self.state.requester is None:
            raise ConfigError(f"the devnet in {self.dir} has no requester wallet yet")
        return load_keystore(Path(self.state.requester.keystore), self.state.keystore_password)

    def requester(self) -> Market:
        """The deployment driven by the funded requester wallet."""
        return Market(self.w3, self.deployment, self.requester_account())

    def provider_addresses(self) -> dict[str, str]:
        """Provider name -> address, in start order."""
        return {p.name: p.address for p in self.state.providers}

    def provider_account(self, name: str) -> LocalAccount:
        for p in self.state.providers:
            if p.name == name:
                return load_keystore(Path(p.keystore), self.state.keystore_password)
        raise ConfigError(f"no provider {name!r}; the devnet has {list(self.provider_addresses())}")

    def fund(self, address: str, *, ether: int = 100, tokens: int = 0) -> None:
        """Gives `address` `ether` ETH (anvil_setBalance) and mints it `tokens` whole tokens.
        Devnet only."""
        checksummed = to_checksum_address(address)
        if ether:
            self.w3.provider.make_request(
                RPCEndpoint("anvil_setBalance"), [checksummed, hex(ether * TOKEN)]
            )
        if tokens:
            self.owner().mint(checksummed, tokens * TOKEN)

    # ------------------------------------------------------------------ status

    def status(self, *, timeout: float = 3.0) -> dict[str, Any]:
        """What runs and answers: each process, the chain head, the relayer API and each
        provider's liveness. `healthy` is true when all of it is."""
        procs = [
            {
                "name": r.name,
                "role": r.role,
                "pid": r.pid,
                "alive": processes.process_alive(r),
                "restarts": r.restarts,
                "last_exit": r.last_exit,
                "log": r.log,
            }
            for r in self.state.processes
        ]
        chain: dict[str, Any] = {"rpc_url": self.state.rpc_url, "head": None}
        try:
            w3 = Web3(Web3.HTTPProvider(self.state.rpc_url, request_kwargs={"timeout": timeout}))
            chain["head"] = w3.eth.block_number
            chain["chain_id"] = w3.eth.chain_id
        except Exception as exc:
            chain["error"] = f"{type(exc).__name__}: {exc}"
        relayer: dict[str, Any] = {"api_url": self.state.api_url, "healthz": None, "status": None}
        live: dict[str, bool] = {}
        if self.state.api_url:
            try:
                with RelayerClient(self.state.api_url, timeout=timeout) as http:
                    relayer["healthz"] = http.get_json("/healthz", what="its health")
                    relayer["status"] = http.get_json("/status", what="its status")
                    book = http.get_json("/providers/liveness", what="provider liveness")
                live = {p["provider"].lower(): bool(p["live"]) for p in book["providers"]}
            except (DepinError, ValueError, KeyError, TypeError) as exc:
                relayer["error"] = f"{type(exc).__name__}: {exc}"
        providers = [
            {**asdict(p), "live": live.get(p.address.lower(), False)} for p in self.state.providers
        ]
        healthy = (
            self.state.phase == "up"
            and all(p["alive"] for p in procs)
            and chain["head"] is not None
            and relayer["healthz"] is not None
            and all(p["live"] for p in providers)
        )
        return {
            "dir": str(self.dir),
            "phase": self.state.phase,
            "healthy": healthy,
            "created": self.state.created,
            "chain": chain,
            "deployment": self.state.deployment,
            "redis_url": self.state.redis_url,
            "relayer": relayer,
            "processes": procs,
            "providers": providers,
            "requester": None if self.state.requester is None else asdict(self.state.requester),
        }

    def exited(self) -> list[tuple[ProcessRecord, int]]:
        """Children of this process (started by `up` here) that have exited, with their codes."""
        out = []
        for record in self.state.processes:
            proc = self._popen.get(record.pid)
            if proc is not None and proc.poll() is not None:
                out.append((record, proc.returncode))
        return out

    # ------------------------------------------------------------------ supervision

    def components(self) -> list[str]:
        """The names `kill` and `restart` take, in start order."""
        return [r.name for r in self.state.processes]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> ProcessRecord:
        """Sends `sig` to component `name`'s whole process group (fault injection: SIGKILL is
        a crash). The record stays in state.json; the supervisor or `restart` starts it again.
        Returns the record signalled."""
        with self._locked():
            record = self._record(name)
        if not processes.signal_group(record, sig):
            log.info("%s (pid %d) was not running; nothing signalled", name, record.pid)
        return record

    def restart(self, name: str, *, wait: bool = True, timeout: float = 60.0) -> ProcessRecord:
        """Stops component `name` if it still runs (SIGTERM, then SIGKILL: Anvil dumps its
        state on SIGTERM), starts the same command with the same settings and log, records
        the new pid in state.json and, with `wait`, waits until it answers (Anvil its chain
        id, Redis PING, the relayer /healthz). `name` may be "all": every component, in start
        order (the last one's record is returned). DevnetError when it exits at once."""
        if name == "all":
            with self._locked():
                names = self.components()
            if not names:
                raise ConfigError(f"the devnet in {self.dir} runs nothing; start it with `up`")
            record = None
            for each in names:
                record = self.restart(each, wait=wait, timeout=timeout)
            assert record is not None
            return record
        return self._restart(name, wait=wait, timeout=timeout, delay=0.0).record

    def supervise_once(self) -> list[Restart]:
        """Starts again every component that stopped, once the restart policy allows it (at
        once the first time, then with backoff); returns one `Restart` per component started.
        Does nothing unless the devnet is up (not while `down` stops it)."""
        with self._locked():
            if self.state.phase != "up":
                return []
            stopped = [r for r in self.state.processes if not processes.process_alive(r)]
        out: list[Restart] = []
        for record in stopped:
            if not self.policy.ready(record.name):
                continue
            delay = self.policy.delay(record.name)
            try:
                done = self._restart(
                    record.name, wait=False, timeout=0.0, delay=delay, only_stopped=True
                )
            except DevnetError as exc:
                log.error("%s could not be started again: %s", record.name, exc)
                self.policy.restarted(record.name)  # counts toward backoff and crash loop
                continue
            if done.restart is not None:
                log.warning("%s", done.restart.line())
                out.append(done.restart)
        return out

    def _restart(
        self, name: str, *, wait: bool, timeout: float, delay: float, only_stopped: bool = False
    ) -> _Done:
        with self._locked():
            if self.state.phase != "up":
                raise ConfigError(
                    f"the devnet in {self.dir} is {self.state.phase}, not up; start it with "
                    f"`depin devnet up --dir {self.dir}`"
                )
            old = self._record(name)
            if only_stopped and processes.process_alive(old):
                # Started again meanwhile by another process (a `restart` from a shell).
                return _Done(old, None)
            code = self._exit_code(old)
            left = processes.stop_groups([old], timeout=10.0)
            if left:
                raise DevnetError(
                    f"cannot stop {name} (pgid {old.pgid}) to restart it; kill it by hand",
                    step=name,
                    log=Path(old.log),
                )
            proc, fresh = processes.spawn(
                name,
                old.role,
                old.command,
                env=_child_env(old.env),
                log=Path(old.log),
                cwd=self.dir,
            )
            self._popen[proc.pid] = proc
            record = replace(fresh, env=old.env, restarts=old.restarts + 1, last_exit=code)
            self.state.processes = [record if r.name == name else r for r in self.state.processes]
            self._write()
        streak = self.policy.restarted(name)
        restart = Restart(
            name=name,
            role=record.role,
            old_pid=old.pid,
            pid=record.pid,
            exit_code=code,
            restarts=record.restarts,
            delay=delay,
            crash_looping=streak >= self.policy.crash_loop,
            log=record.log,
            requested=not only_stopped,
        )
        if wait:
            self._wait_ready(record, proc, timeout)
        return _Done(record, restart)

    def _wait_ready(
        self, record: ProcessRecord, proc: subprocess.Popen[bytes], timeout: float
    ) -> None:
        started = time.monotonic()

        def ready() -> bool:
            if record.role == "anvil":
                w3 = Web3(Web3.HTTPProvider(self.state.rpc_url, request_kwargs={"timeout": 2}))
                return bool(w3.eth.chain_id == self.state.chain_id)
            if record.role == "redis":
                client = redis.Redis.from_url(self.state.redis_url, socket_timeout=1)
                try:
                    return bool(client.ping())
                finally:
                    client.close()
            if record.role == "relayer":
                with RelayerClient(self.state.api_url, timeout=2) as http:
                    return http.get("/healthz").status_code == 200
            # Agents and workers serve nothing: still running after a moment is the check.
            return time.monotonic() - started > 1.0

        what = {
            "anvil": f"answering on {self.state.rpc_url}",
            "redis": f"answering PING on {self.state.redis_url}",
            "relayer": f"serving {self.state.api_url}/healthz",
        }.get(record.role, "running")
        self._wait(record.name, proc, Path(record.log), ready, timeout, what)

    def _record(self, name: str) -> ProcessRecord:
        for record in self.state.processes:
            if record.name == name:
                return record
        raise ConfigError(
            f"no component {name!r} in the devnet in {self.dir}; it has "
            f"{', '.join(self.components()) or 'nothing running'} (or `all`)"
        )

    def _exit_code(self, record: ProcessRecord) -> int | None:
        proc = self._popen.get(record.pid)
        return None if proc is None else proc.poll()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Holds the state file's lock and re-reads the state: another process (a foreground
        `up`, a `restart` from a shell) may have changed it."""
        if not (self.dir / STATE_FILE).exists():
            yield
            return
        with (self.dir / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.state = DevnetState.load(self.dir)
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ internals

    def _write(self) -> None:
        self.state.write(self.dir)

    def _stop_all(self, timeout: float = 10.0) -> list[ProcessRecord]:
        left = processes.stop_groups(self.state.processes, timeout=timeout)
        for proc in self._popen.values():
            proc.poll()
        self.state.processes = left
        self.state.phase = "down"
        if self.dir.exists():
            self._write()
        return left

    def _spawn(
        self, name: str, role: str, command: list[str], env: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.dir / "logs" / f"{name}.log"
        try:
            proc, record = processes.spawn(
                name, role, command, env=_child_env(env), log=log, cwd=self.dir
            )
        except OSError as exc:
            raise DevnetError(
                f"cannot start {name} ({command[0]}): {exc}", step=name, log=log
            ) from exc
        self._popen[proc.pid] = proc
        self.state.processes.append(replace(record, env=dict(env)))
        self._write()
        return proc, log

    def _wait(
        self,
        step: str,
        proc: subprocess.Popen[bytes] | None,
        log: Path | None,
        ready: Callable[[], bool],
        timeout: float,
        what: str,
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc is not None and proc.poll() is not None:
                raise DevnetError(
                    f"{step} exited with code {proc.returncode} before {what}; see {log}\n"
                    f"{_tail(log)}",
                    step=step,
                    log=log,
                )
            try:
                if ready():
                    return
            except DevnetError:
                raise
            except Exception:
                pass  # not answering yet
            if time.monotonic() > deadline:
                raise DevnetError(
                    f"{step}: not {what} within {timeout:.0f} s; see {log}\n{_tail(log)}",
                    step=step,
                    log=log,
                )
            time.sleep(0.1)

    @contextlib.contextmanager
    def _step(self, step: str, log: Path | None = None) -> Iterator[None]:
        """Turns any error of a step into a DevnetError naming it (and its log)."""
        try:
            yield
        except DevnetError:
            raise
        except Exception as exc:
            where = f"; see {log}" if log is not None else ""
            raise DevnetError(
                f"{step} failed: {type(exc).__name__}: {exc}{where}", step=step, log=log
            ) from exc

    def _start(
        self,
        config: DevnetConfig,
        behaviors: list[str],
        params: MarketParams,
        say: Callable[[str], None],
    ) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write()
        with self._step("anvil"):
            self._start_anvil(config)
        say(f"anvil     {self.state.rpc_url} (chain {CHAIN_ID})")
        with self._step("redis"):
            self._start_redis(config)
        say(f"redis     {self.state.redis_url}")
        with self._step("deploy"):
            deployer, matcher = self._deploy(params)
        say(f"contracts market {self.state.deployment['market']}")
        with self._step("relayer"):
            self._start_relayer(config, matcher)
        say(f"relayer   {self.state.api_url}")
        owner = Market(self.w3, self.deployment, deployer)
        for index, behavior in enumerate(behaviors, start=1):
            name = f"provider-{index}"
            with self._step(name):
                record = self._start_provider(config, owner, name, behavior)
            say(f"{name:<9} {record.address} ({behavior}, queue {record.queue})")
        with self._step("requester"):
            requester = self._fund_requester(owner)
        say(f"requester {requester.address} ({REQUESTER_TOKENS // TOKEN} tokens)")

        if self.state.providers and config.wait_for_providers:
            self._wait_providers(config.timeout)
            say(f"providers {len(self.state.providers)} live")
        for record_, code in self.exited():
            raise DevnetError(
                f"{record_.name} exited with code {code}; see {record_.log}\n"
                f"{_tail(Path(record_.log))}",
                step=record_.name,
                log=Path(record_.log),
            )
        self.state.phase = "up"
        self._write()

    def _start_anvil(self, config: DevnetConfig) -> None:
        """Anvil with automine plus a block every second, so deadlines pass on an idle chain,
        or with a block every `config.block_time` seconds and nothing else, as a real chain;
        its state is dumped to anvil-state.json every 10 s and on exit."""
        port = config.anvil_port or free_port()
        self.state.rpc_url = f"http://127.0.0.1:{port}"
        mining = (
            ["--block-time", "1", "--mixed-mining"]
            if config.block_time is None
            else ["--block-time", f"{config.block_time:g}"]
        )
        command = [
            config.anvil_binary or anvil_binary(),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--chain-id", str(CHAIN_ID),
            *mining,
            "--state", str(self.dir / "anvil-state.json"),
            "--state-interval", str(config.state_interval),
        ]  # fmt: skip
        proc, log = self._spawn("anvil", "anvil", command, {})
        self._wait(
            "anvil",
            proc,
            log,
            lambda: self.w3.eth.chain_id == CHAIN_ID,
            config.timeout,
            f"answering on {self.state.rpc_url}",
        )
        self.state.chain_id = CHAIN_ID

    def _start_redis(self, config: DevnetConfig) -> None:
        """The Celery broker of every provider (one queue each), append-only, loopback only."""
        port = config.redis_port or free_port()
        self.state.redis_url = f"redis://127.0.0.1:{port}/0"
        (self.dir / "redis").mkdir(parents=True, exist_ok=True)
        command = [
            config.redis_binary or processes.redis_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir / "redis"),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        proc, log = self._spawn("redis", "redis", command, {})
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        try:
            self._wait(
                "redis",
                proc,
                log,
                lambda: bool(client.ping()),
                config.timeout,
                f"answering PING on {self.state.redis_url}",
            )
        finally:
            client.close()

    def _deploy(self, params: MarketParams) -> tuple[LocalAccount, LocalAccount]:
        """The contracts, owned by a fresh deployer; returns (deployer, matcher)."""
        deployer = funded_account(self.w3, ether=10_000)
        matcher = funded_account(self.w3, ether=1_000)
        deployment_file = self.dir / "deployment.json"
        deployment = deploy(
            self.w3,
            deployer,
            matchers=(matcher.address,),
            params=params,
            write_to=deployment_file,
        )
        self.state.deployment_file = str(deployment_file)
        self.state.deployment = {
            "token": deployment.token,
            "registry": deployment.registry,
            "market": deployment.market,
            "block": deployment.block,
        }
        self.state.params = asdict(params)
        self.state.matcher = matcher.address
        self.state.deployer = {"address": deployer.address, "key": "0x" + deployer.key.hex()}
        self._write()
        return deployer, matcher

    def _start_relayer(self, config: DevnetConfig, matcher: LocalAccount) -> None:
        """`depin relayer run` (matcher, keeper, HTTP API); ready when /healthz answers."""
        port = config.api_port or free_port()
        self.state.api_url = f"http://127.0.0.1:{port}"
        env = {
            "DEPIN_RELAYER_RPC_URL": self.state.rpc_url,
            "DEPIN_RELAYER_DEPLOYMENT_FILE": self.state.deployment_file,
            "DEPIN_RELAYER_PRIVATE_KEY": "0x" + matcher.key.hex(),
            "DEPIN_RELAYER_DB_URL": sqlite_url(self.dir / RELAYER_DB_FILE),
            "DEPIN_RELAYER_CONFIRMATIONS": str(config.confirmations),
            "DEPIN_RELAYER_WS_URL": "" if config.wake_on_events else "off",
            "DEPIN_RELAYER_POLL_INTERVAL": "0.25",
            "DEPIN_RELAYER_API_PORT": str(port),
            "DEPIN_RELAYER_ARTIFACT_ROOT": str(self.dir / "artifacts"),
            "DEPIN_RELAYER_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
        }
        command = [config.python, "-m", "marketplace.cli.main", "relayer", "run"]
        proc, log = self._spawn("relayer", "relayer", command, env)
        with RelayerClient(self.state.api_url, timeout=2) as http:
            self._wait(
                "relayer",
                proc,
                log,
                lambda: http.get("/healthz").status_code == 200,
                config.timeout,
                f"serving {self.state.api_url}/healthz",
            )

    def _start_provider(
        self, config: DevnetConfig, owner: Market, name: str, behavior: str
    ) -> ProviderRecord:
        """A fresh key, funded, registered (CPU profile) and staked here; then its agent and
        its Celery worker, on its own queue of the shared Redis."""
        key = funded_account(self.w3)
        owner.mint(key.address, PROVIDER_STAKE)
        provider = owner.as_account(key)
        provider.register(
            ProviderTerms(
                profile_mask=0b1,
                price_per_unit=PRICE_PER_UNIT,
                gpu_model="cpu",
                min_exec_window=PROVIDER_MIN_EXEC_WINDOW,
                max_units=PROVIDER_MAX_UNITS,
            )
        )
        provider.stake(PROVIDER_STAKE)
        keystore = write_keystore(
            key, DEVNET_PASSWORD, self.dir / "keys" / f"{name}.json", iterations=KEYSTORE_ITERATIONS
        )
        record = ProviderRecord(name, key.address, behavior, str(keystore), f"depin-{name}")
        self.state.providers.append(record)
        self._write()
        (self.dir / "db").mkdir(exist_ok=True)
        env = {
            "DEPIN_PROVIDER_RPC_URL": self.state.rpc_url,
            "DEPIN_PROVIDER_DEPLOYMENT_FILE": self.state.deployment_file,
            "DEPIN_PROVIDER_KEYSTORE_FILE": str(keystore),
            "DEPIN_PROVIDER_KEYSTORE_PASSWORD": DEVNET_PASSWORD,
            "DEPIN_PROVIDER_RELAYER_URL": self.state.api_url,
            "DEPIN_PROVIDER_BROKER_URL": self.state.redis_url,
            "DEPIN_PROVIDER_QUEUE": record.queue,
            "DEPIN_PROVIDER_DB_URL": sqlite_url(self.dir / "db" / f"{name}.sqlite3"),
            "DEPIN_PROVIDER_CONFIRMATIONS": str(config.confirmations),
            "DEPIN_PROVIDER_WS_URL": "" if config.wake_on_events else "off",
            "DEPIN_PROVIDER_WAKE_ON_RESULTS": str(config.wake_on_events).lower(),
            "DEPIN_PROVIDER_POLL_INTERVAL": "0.25",
            "DEPIN_PROVIDER_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
            "DEPIN_PROVIDER_CAPACITY": str(config.workers_per_provider),
            "DEPIN_PROVIDER_TASK_TIME_LIMIT": str(config.task_time_limit),
            # Redis must not hand a running task to a second worker: twice the time limit.
            "DEPIN_PROVIDER_VISIBILITY_TIMEOUT": str(2 * config.task_time_limit),
            "DEPIN_PROVIDER_BEHAVIOR": behavior,
        }
        cli = [config.python, "-m", "marketplace.cli.main", "provider"]
        self._spawn(f"{name}-agent", "agent", [*cli, "run"], env)
        worker = [*cli, "worker", "--concurrency", str(config.workers_per_provider)]
        self._spawn(f"{name}-worker", "worker", worker, env)
        return record

    def _fund_requester(self, owner: Market) -> LocalAccount:
        """A requester wallet with ETH and tokens, in keys/requester.json."""
        requester = funded_account(self.w3)
        owner.mint(requester.address, REQUESTER_TOKENS)
        keystore = write_keystore(
            requester,
            DEVNET_PASSWORD,
            self.dir / "keys" / "requester.json",
            iterations=KEYSTORE_ITERATIONS,
        )
        self.state.requester = WalletRecord(requester.address, str(keystore))
        self._write()
        return requester

    def _wait_providers(self, timeout: float) -> None:
        wanted = {p.address.lower() for p in self.state.providers}
        seen: set[str] = set()

        def all_live() -> bool:
            for record, code in self.exited():
                raise DevnetError(
                    f"{record.name} exited with code {code} before its provider was live; "
                    f"see {record.log}\n{_tail(Path(record.log))}",
                    step=record.name,
                    log=Path(record.log),
                )
            with RelayerClient(self.state.api_url, timeout=2) as http:
                book = http.get_json("/providers/liveness", what="provider liveness")
            seen.clear()
            seen.update(p["provider"].lower() for p in book["providers"] if p["live"])
            return wanted <= seen

        try:
            self._wait("providers", None, None, all_live, timeout, "all heartbeating")
        except DevnetError as exc:
            if exc.step != "providers":
                raise
            silent = [p for p in self.state.providers if p.address.lower() not in seen]
            logs = ", ".join(str(self.dir / "logs" / f"{p.name}-agent.log") for p in silent)
            raise DevnetError(
                f"providers {[p.name for p in silent]} sent no heartbeat within {timeout:.0f} s; "
                f"see {logs}",
                step="providers",
                log=self.dir / "logs" / f"{silent[0].name}-agent.log" if silent else None,
            ) from None


def _names(records: list[ProcessRecord]) -> str:
    return ", ".join(f"{r.name} (pid {r.pid})" for r in records)


def _resumable(directory: Path) -> bool:
    """Whether `directory` holds a devnet `up` can resume or repair: one that `down` stopped
    after it ran, or one that is up with components to start again."""
    if not (directory / STATE_FILE).exists():
        return False
    try:
        state = DevnetState.load(directory)
    except ConfigError:
        return False
    if state.phase == "up" and state.processes:
        return bool(state.deployment_file)
    return state.phase == "down" and bool(state.stopped)


def _prepare_dir(directory: Path, *, fresh: bool) -> None:
    """Refuses a directory with a running devnet or unrelated files; wipes a stopped devnet
    when `fresh`."""
    if not directory.exists() or not any(directory.iterdir()):
        return
    if not (directory / STATE_FILE).exists():
        raise ConfigError(f"{directory} is not empty and holds no devnet; choose another --dir")
    try:
        old = DevnetState.load(directory)
    except ConfigError:
        old = None
    if old is not None and any(processes.group_alive(r.pgid) for r in old.processes):
        raise ConfigError(
            f"a devnet already runs in {directory}; stop it with "
            f"`depin devnet down --dir {directory}` first"
        )
    if not fresh:
        raise ConfigError(
            f"{directory} holds a stopped devnet; pass --fresh to replace it, or "
            f"`depin devnet down --clean --dir {directory}` to delete it"
        )
    shutil.rmtree(directory)
