"""The devnet state file (`<dir>/state.json`): where everything `depin devnet up` started lives.

Written atomically (a temporary file renamed over the old one) after every step of `up`, so a
crashed `up` still leaves what `down` needs to stop it. Devnet only: it holds the deployer key,
so `depin wallet faucet` can mint, and the keystore password of the dev wallets.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from marketplace.protocol.errors import ConfigError

__all__ = [
    "STATE_FILE",
    "DevnetState",
    "ProcessRecord",
    "ProviderRecord",
    "WalletRecord",
    "write_json_atomic",
]

STATE_FILE = "state.json"
#: Bumped when a field changes meaning; `load` refuses other versions.
STATE_VERSION = 1

#: starting (in `up`), up, stopping (in `down`: nothing is restarted), down.
Phase = Literal["starting", "up", "stopping", "down"]


@dataclass(frozen=True)
class ProcessRecord:
    """One child process, leader of its own process group (and session)."""

    name: str
    #: anvil | redis | relayer | agent | worker; `down` stops roles in reverse start order.
    role: str
    pid: int
    pgid: int
    #: Kernel start time of the process (clock ticks since boot), so a reused pid is never
    #: signalled; None when the process could not be read.
    start_ticks: int | None
    log: str
    command: list[str]
    #: The DEPIN_ settings the process was started with (on top of the caller's environment
    #: without its own DEPIN_ variables), so any process can restart it the same way.
    env: dict[str, str] = field(default_factory=dict)
    #: Times this component was started again after it stopped (crash or `restart`).
    restarts: int = 0
    #: Exit code of the process this one replaced (negative: killed by that signal); None when
    #: unknown (it was not a child of the process that restarted it) or never restarted.
    last_exit: int | None = None


@dataclass(frozen=True)
class ProviderRecord:
    name: str
    address: str
    behavior: str
    keystore: str
    queue: str


@dataclass(frozen=True)
class WalletRecord:
    address: str
    keystore: str


@dataclass
class DevnetState:
    """Everything a client needs to reach the devnet, and what `down` needs to stop it."""

    dir: str
    created: str
    phase: Phase = "starting"
    rpc_url: str = ""
    chain_id: int = 0
    deployment_file: str = ""
    #: The contract addresses (token, registry, market) and the deployment block.
    deployment: dict[str, Any] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    api_url: str = ""
    redis_url: str = ""
    #: Address of the relayer's matcher key.
    matcher: str = ""
    #: Deployer (token owner): address and hex key. Devnet only, for the faucet.
    deployer: dict[str, str] = field(default_factory=dict)
    #: Password of every keystore under keys/. Devnet only.
    keystore_password: str = ""
    processes: list[ProcessRecord] = field(default_factory=list)
    #: The components `down` stopped, in start order: what `up` starts again to resume.
    stopped: list[ProcessRecord] = field(default_factory=list)
    providers: list[ProviderRecord] = field(default_factory=list)
    requester: WalletRecord | None = None
    version: int = STATE_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DevnetState:
        if data.get("version") != STATE_VERSION:
            raise ConfigError(
                f"devnet state version {data.get('version')!r} is not {STATE_VERSION}; "
                "stop it with the depin that started it, or delete the devnet directory"
            )
        data = dict(data)
        data["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        data["stopped"] = [ProcessRecord(**p) for p in data.get("stopped", [])]
        data["providers"] = [ProviderRecord(**p) for p in data.get("providers", [])]
        requester = data.get("requester")
        data["requester"] = None if requester is None else WalletRecord(**requester)
        return cls(**data)

    def write(self, directory: Path) -> Path:
        return write_json_atomic(directory / STATE_FILE, self.to_json())

    @classmethod
    def load(cls, directory: Path) -> DevnetState:
        path = directory / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return cls.from_json(data)
        except FileNotFoundError:
            raise ConfigError(
                f"no devnet state at {path}; start one with `depin devnet up --dir {directory}`"
            ) from None
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{path} is not a devnet state file ({exc}); stop any processes it started by "
                "hand and delete the directory"
            ) from None


def write_json_atomic(path: Path, data: Any) -> Path:
    """Writes `data` as JSON to `path` through a temporary file in the same directory and a
    rename, so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
