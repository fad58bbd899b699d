"""One source for the heartbeat pace: the relayer announces its interval with every accepted
heartbeat and an agent configured slower follows it, so a provider joined by hand with the
default interval does not flap between live and silent on a relayer that wants more."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from tests.provider.conftest import World

pytestmark = pytest.mark.integration


def test_the_agent_heartbeats_at_the_pace_the_relayer_announces(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    alice = world.agent("alice", heartbeat_interval=60)
    now = [time.time()]
    alice.clock = lambda: now[0]  # the agent's wall clock, moved by hand below
    assert alice.heartbeat_interval == 60  # nothing announced yet

    assert alice.step().heartbeat
    announced = httpx.get(f"{world.api_url}/providers/liveness").json()["interval"]
    assert announced == 15 and alice.heartbeat_interval == 15
    assert "the relayer expects a heartbeat every 15 s" in caplog.text

    now[0] += 14
    assert not alice.step().heartbeat  # not due yet at the relayer's pace
    now[0] += 2
    assert alice.step().heartbeat  # due after 15 s, not the configured 60
    assert caplog.text.count("the relayer expects a heartbeat") == 1


@pytest.mark.providers(2)
def test_an_agent_configured_faster_keeps_its_own_pace(world: World) -> None:
    bob = world.agent("bob", heartbeat_interval=5)
    now = [time.time()]
    bob.clock = lambda: now[0]
    assert bob.step().heartbeat
    assert bob.heartbeat_interval == 5
    now[0] += 6
    assert bob.step().heartbeat


def test_a_refused_heartbeat_is_tried_again_within_one_interval(world: World) -> None:
    # The relayer counts a provider silent after a few intervals without a heartbeat: backing
    # off longer than one interval after a refusal would make it skip the provider.
    alice = world.agent("alice", heartbeat_interval=2)
    alice.clock = lambda: time.time() + 3_600  # beyond the relayer's allowed clock skew
    assert not alice.step().heartbeat  # refused
    alice.clock = time.time
    time.sleep(2.2)
    assert alice.step().heartbeat  # tried again after one interval, not after 5 s or more
    liveness = httpx.get(f"{world.api_url}/providers/liveness").json()["providers"]
    assert [p["live"] for p in liveness] == [True]
