"""The wake-up a polling loop waits on, and which WebSocket endpoint a role follows."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from marketplace.protocol.wakeup import Wakeup, ws_url_for
from marketplace.requester.settings import RequesterSettings


def test_a_wakeup_ends_the_wait_at_once_and_is_used_up() -> None:
    wakeup, stop = Wakeup(), threading.Event()
    threading.Timer(0.05, wakeup.set).start()
    start = time.monotonic()
    assert wakeup.wait(stop, 5.0) is True
    assert time.monotonic() - start < 1.0
    # Used up: the next wait runs to its timeout.
    assert wakeup.wait(stop, 0.15) is False


def test_wakeups_while_the_loop_works_collapse_into_one() -> None:
    wakeup, stop = Wakeup(), threading.Event()
    wakeup.set()  # two blocks while the loop was reading: its next read covers both
    wakeup.set()
    assert wakeup.count == 2
    assert wakeup.wait(stop, 1.0) is True
    assert wakeup.wait(stop, 0.15) is False


def test_a_wait_times_out_and_stops() -> None:
    wakeup, stop = Wakeup(), threading.Event()
    start = time.monotonic()
    assert wakeup.wait(stop, 0.2) is False
    assert 0.15 <= time.monotonic() - start < 1.0
    threading.Timer(0.05, stop.set).start()
    start = time.monotonic()
    assert wakeup.wait(stop, 30.0) is False
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize(
    ("rpc", "setting", "expected"),
    [
        ("http://127.0.0.1:8545", "", "ws://127.0.0.1:8545"),
        ("https://node.example/v1/key", "", "wss://node.example/v1/key"),
        ("http://127.0.0.1:8545", "off", None),
        ("http://127.0.0.1:8545", "ws://127.0.0.1:8546", "ws://127.0.0.1:8546"),
        ("/var/run/geth.ipc", "", None),
    ],
)
def test_the_endpoint_followed(rpc: str, setting: str, expected: str | None) -> None:
    assert ws_url_for(rpc, setting) == expected


def test_a_setting_that_is_no_websocket_url_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="'off' to poll only"):
        ws_url_for("http://127.0.0.1:8545", "http://127.0.0.1:8546")
    with pytest.raises(ValidationError, match="'off' to poll only"):
        RequesterSettings(ws_url="127.0.0.1:8546")
    assert RequesterSettings(ws_url="off").heads_url() is None
    assert RequesterSettings(rpc_url="http://h:1").heads_url() == "ws://h:1"
