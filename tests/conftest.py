"""Test-suite wiring shared by unit, contract and integration tests.

ape's pytest plugin is loaded through its entry point in every pytest run; as soon as
any test is collected it connects to the default network (Anvil via ape-foundry, see
ape-config.yaml) and wraps each test in chain-snapshot isolation. Only tests/contracts
need a chain, so its runner is dropped when no contract test is collected: then
`pytest tests/unit` starts nothing.

Chain tests outside tests/contracts share one Anvil node, `anvil`, started on first use.
Each module or test on it works inside `reverted` (evm_snapshot, then evm_revert), so no
deployment, block, balance or clock change of one reaches the next. A test that stops, kills or
restarts its node, loads a state file or needs another chain id starts an `Anvil` of its own.
"""

import os
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from hypothesis import Phase, settings
from web3 import Web3
from web3.types import RPCEndpoint

from marketplace.api.listen import listen
from marketplace.devnet.anvil import Anvil
from tests.pg_fixture import new_db_url, pg_url, postgres  # noqa: F401  (PostgreSQL fixtures)

_ROOT = Path(__file__).resolve().parent.parent
_CONTRACT_TESTS = _ROOT / "tests" / "contracts"

# The same environment `make test` sets, so a bare `pytest` run behaves alike: the solc
# facade instead of a downloaded compiler, the npm Anvil for ape-foundry, no model hub.
os.environ.setdefault("SOLCX_BINARY_PATH", str(_ROOT / "tools" / "solc"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["PATH"] = os.pathsep.join(
    [str(_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin"), os.environ["PATH"]]
)


# Mutation runs (tools/mutate_python.py) only need to know that a property fails, not its
# smallest counterexample: without shrinking, a killed mutant costs one failing example.
settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate], database=None
)
# No per-example deadline: on a loaded machine the OS can stall any one example past
# Hypothesis' 200 ms, which it reports as a failure of the property.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    # Mark before `-m` filtering runs, decide after it: `-m "not contracts"` starts no chain.
    for item in items:
        if _CONTRACT_TESTS in item.path.parents:
            item.add_marker(pytest.mark.contracts)
    yield
    runner = config.pluginmanager.get_plugin("ape-test")
    if runner is not None and not any(item.get_closest_marker("contracts") for item in items):
        config.pluginmanager.unregister(runner)


def serve(app: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serves an ASGI app with uvicorn in a daemon thread on a free loopback port; returns its
    URL, the server (set `should_exit` to stop it) and the thread."""
    sock = listen("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return url, server, thread


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    """The Anvil node the chain tests share (see the module docstring); use it in `reverted`."""
    with Anvil(log_file=tmp_path_factory.mktemp("anvil") / "anvil.log") as node:
        yield node


@contextmanager
def reverted(w3: Web3) -> Iterator[None]:
    """Undoes on exit everything done on the chain of `w3` inside: blocks, state and clock.
    Nested uses unwind innermost first, as fixtures do."""
    snapshot = w3.provider.make_request(RPCEndpoint("evm_snapshot"), [])["result"]
    try:
        yield
    finally:
        answer = w3.provider.make_request(RPCEndpoint("evm_revert"), [snapshot])
        # False: a revert inside went back past this snapshot, so the chain is not as it was.
        assert answer.get("result") is True, f"evm_revert to snapshot {snapshot}: {answer}"
