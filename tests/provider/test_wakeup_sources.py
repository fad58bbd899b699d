"""The wake-up sources against a real node and a real Redis: new blocks over WebSocket, Celery's
result notices on Redis channels, and a source that cannot connect (the loop only polls)."""

from __future__ import annotations

import threading
import time

import redis
from web3 import Web3

from marketplace.devnet.anvil import Anvil, mine
from marketplace.protocol.wakeup import NewHeads, RedisChannels, Wakeup, following
from tests.conftest import reverted
from tests.provider.conftest import RedisServer


def test_each_new_block_wakes_the_loop(anvil: Anvil) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    wakeup, stop = Wakeup(), threading.Event()
    source = NewHeads(anvil.url.replace("http://", "ws://"), [wakeup])
    source.start()
    try:
        assert source.subscribed.wait(10), "no subscription"
        with reverted(w3):
            for _ in range(3):
                mine(w3)
                assert wakeup.wait(stop, 5.0) is True
            assert source.heads >= 3
        assert not source.outage.down
    finally:
        source.close()
    assert not source.subscribed.is_set()


def test_a_published_result_wakes_the_agent_loop(redis_server: RedisServer) -> None:
    stop = threading.Event()
    with following(None, redis_url=redis_server.url, redis_pattern="celery-task-meta-*") as wakeup:
        client = redis.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + 10
        # The subscription is made in the source's thread: publish until Redis counts it as a
        # receiver, so exactly one notice is on its way.
        while client.publish("celery-task-meta-abc", "{}") == 0:
            assert time.monotonic() < deadline, "the source never subscribed"
            time.sleep(0.05)
        assert wakeup.wait(stop, 10), "no notice heard"
        count = wakeup.count
        client.publish("other-channel", "{}")
        assert wakeup.wait(stop, 0.3) is False
        assert wakeup.count == count
        client.close()


def test_a_missing_endpoint_leaves_the_loop_polling() -> None:
    wakeup, stop = Wakeup(), threading.Event()
    source = NewHeads("ws://127.0.0.1:9", [wakeup])
    channels = RedisChannels("redis://127.0.0.1:9/0", "x*", [wakeup])
    source.start()
    channels.start()
    try:
        deadline = time.monotonic() + 10
        while not (source.outage.down and channels.outage.down):
            assert time.monotonic() < deadline, "the failures were not recorded"
            time.sleep(0.05)
        assert wakeup.wait(stop, 0.2) is False  # the timed wait still runs
    finally:
        source.close()
        channels.close()
