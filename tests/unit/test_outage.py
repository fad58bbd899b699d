"""The outage log: one warning per outage, one recovery line, capped backoff."""

from __future__ import annotations

import logging

import pytest

from marketplace.protocol.outage import Outage


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_warning_per_outage_and_one_recovery_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    outage = Outage("redis", logging.getLogger("t"), first_delay=1, max_delay=4, clock=clock)
    caplog.set_level(logging.DEBUG, logger="t")
    delays = [outage.failed(ConnectionError("refused")) for _ in range(5)]
    assert delays == [1, 2, 4, 4, 4]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "redis unavailable" in warnings[0].getMessage()
    assert outage.down and outage.count == 1
    clock.now += 7.5
    assert outage.elapsed() == pytest.approx(7.5)
    outage.ok()
    outage.ok()
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "back after 7.5 s" in infos[0].getMessage()
    outage.failed("again")
    assert outage.count == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_ready_waits_out_the_backoff() -> None:
    clock = _Clock()
    outage = Outage("relayer", logging.getLogger("t"), first_delay=2, max_delay=8, clock=clock)
    assert outage.ready()
    outage.failed("down")
    assert not outage.ready()
    clock.now += 2
    assert outage.ready()
    outage.ok()
    assert outage.ready() and outage.elapsed() == 0


def test_bad_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="first_delay"):
        Outage("x", logging.getLogger("t"), first_delay=0)
