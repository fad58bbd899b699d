"""An Anvil node as a child process, with the devnet-only RPC helpers (time travel, funding)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.protocol.errors import ChainError, ConfigError

_REPO_ANVIL = (
    Path(__file__).resolve().parents[2] / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
)


def anvil_binary() -> str:
    """The anvil executable: on PATH, else the one `npm ci` put in node_modules."""
    found = shutil.which("anvil")
    if found:
        return found
    if _REPO_ANVIL.exists():
        return str(_REPO_ANVIL)
    raise ConfigError("anvil not found; run `npm ci` in the project root (or `make bootstrap`)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """Starts Anvil on a free loopback port; stops it on exit. `state_file` keeps the chain
    across restarts (anvil --state: loaded at start, dumped on a clean exit and, with
    `state_interval`, every that many seconds). `kill()` then `start()` is a crash and restart
    on the same port: the chain comes back as of the last dump, shorter than it was."""

    def __init__(
        self,
        port: int | None = None,
        state_file: Path | None = None,
        log_file: Path | None = None,
        chain_id: int = 31337,
        state_interval: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.state_file = state_file
        self.log_file = log_file
        self.chain_id = chain_id
        self.state_interval = state_interval
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Anvil:
        cmd = [anvil_binary(), "--port", str(self.port), "--chain-id", str(self.chain_id)]
        if self.state_file is not None:
            cmd += ["--state", str(self.state_file)]
            if self.state_interval is not None:
                cmd += ["--state-interval", str(self.state_interval)]
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        w3 = Web3(Web3.HTTPProvider(self.url))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChainError(
                    f"anvil exited with code {self.proc.returncode}; see {self.log_file}"
                )
            try:
                if w3.eth.chain_id == self.chain_id:
                    return self
            except Exception:
                time.sleep(0.1)
        self.stop()
        raise ChainError(f"anvil did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is dumped, the state file keeps its last dump."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def advance(w3: Web3, seconds: int) -> None:
    """Moves the devnet clock forward and mines a block (devnet only: evm_increaseTime)."""
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def mine(w3: Web3, blocks: int = 1) -> None:
    for _ in range(blocks):
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def funded_account(w3: Web3, ether: int = 100) -> LocalAccount:
    """A fresh key with `ether` ETH for gas (devnet only: anvil_setBalance)."""
    account: LocalAccount = Account.create()
    w3.provider.make_request("anvil_setBalance", [account.address, hex(ether * 10**18)])  # type: ignore[arg-type]
    return account
