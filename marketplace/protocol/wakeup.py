"""Wake-ups that end a polling loop's wait as soon as there is something to read.

The relayer, the provider agent and the requester's `wait` follow the chain in loops that read
an explicit block range and a checkpoint: that reading stays the one source of truth (it is what
survives reorgs, restarts and outages). What changes is when the next read happens. Instead of
sleeping a fixed interval, a loop waits on a `Wakeup`, which a background source sets:

- `NewHeads`: the node's `eth_subscribe("newHeads")` over WebSocket (Anvil, geth, reth and the
  hosted providers serve it; Anvil on its HTTP port). Each new block ends the wait.
- `RedisChannels`: a Redis pattern subscription (Celery's Redis result backend publishes each
  result on its key's channel), so a provider agent hears its worker finish at once.

A source that cannot connect (an HTTP-only endpoint, Redis down) logs once and retries with
backoff; the loop's timed wait goes on meanwhile, so a missing source costs latency only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Final

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from marketplace.protocol.outage import Outage

__all__ = ["NewHeads", "RedisChannels", "Wakeup", "following", "ws_url_for"]

log = logging.getLogger(__name__)

#: How often a waiting loop looks at its stop flag; bounds how long a stop takes.
_STOP_CHECK: Final = 0.1
#: Longest pause between two attempts to reach a source that is down.
_MAX_RETRY: Final = 30.0
_SUBSCRIBE: Final = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}


class Wakeup:
    """A flag that sources set and one loop waits on; wake-ups while the loop works collapse
    into one, which the loop's next read covers."""

    def __init__(self) -> None:
        self._event = threading.Event()
        #: Wake-ups seen so far (tests and metrics read it).
        self.count = 0

    def set(self) -> None:
        self.count += 1
        self._event.set()

    def wait(self, stop: threading.Event, timeout: float) -> bool:
        """Returns True when woken, False after `timeout` seconds or once `stop` is set."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._event.wait(min(remaining, _STOP_CHECK)):
                self._event.clear()
                return True
        return False


def ws_url_for(rpc_url: str, setting: str = "") -> str | None:
    """The WebSocket endpoint to subscribe to: `setting` when it names one, none when it is
    "off", else the RPC URL with its scheme swapped (http -> ws, https -> wss): most nodes serve
    both on one port. None for an RPC URL of another scheme (IPC paths)."""
    if setting == "off":
        return None
    if setting:
        if not setting.startswith(("ws://", "wss://")):
            raise ValueError(
                f"ws_url {setting!r} is not a WebSocket URL: give ws://host:port, wss://..., or "
                "'off' to poll only"
            )
        return setting
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if rpc_url.startswith(http):
            return ws + rpc_url[len(http) :]
    return None


class _Source:
    """A daemon thread that keeps one subscription open and sets its wake-ups."""

    def __init__(self, name: str, wakeups: Iterable[Wakeup], first_retry: float) -> None:
        self.name = name
        self.wakeups = list(wakeups)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.outage = Outage(name, log, first_delay=first_retry, max_delay=_MAX_RETRY)
        #: Set once the subscription answered; cleared while it is down.
        self.subscribed = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._interrupt()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wake(self) -> None:
        for wakeup in self.wakeups:
            wakeup.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # any failure of the source only costs latency
                self.subscribed.clear()
                if self._stop.is_set():
                    break
                pause = self.outage.failed(exc)
                self._stop.wait(pause)
            else:
                self.subscribed.clear()

    def _follow(self) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        raise NotImplementedError


class NewHeads(_Source):
    """Sets its wake-ups on every block the node at `url` announces."""

    def __init__(self, url: str, wakeups: Iterable[Wakeup]) -> None:
        super().__init__(f"new-block notices at {url}", wakeups, first_retry=1.0)
        self.url = url
        self._ws: ClientConnection | None = None
        #: Blocks announced so far.
        self.heads = 0

    def _follow(self) -> None:
        try:
            ws = connect(self.url, open_timeout=5.0, close_timeout=1.0)
            self._ws = ws
            with ws:
                if self._stop.is_set():
                    return
                ws.send(json.dumps(_SUBSCRIBE))
                reply = json.loads(ws.recv(timeout=5.0))
                if "result" not in reply:
                    raise RuntimeError(f"eth_subscribe refused: {reply.get('error', reply)}")
                self.outage.ok()
                self.subscribed.set()
                for message in ws:
                    if json.loads(message).get("method") == "eth_subscription":
                        self.heads += 1
                        self.wake()
                if not self._stop.is_set():
                    raise RuntimeError("the node closed the subscription")
        except WebSocketException as exc:
            if self._stop.is_set():
                return
            raise RuntimeError(f"{exc}") from exc
        finally:
            self._ws = None

    def _interrupt(self) -> None:
        ws = self._ws
        if ws is not None:
            ws.close()


class RedisChannels(_Source):
    """Sets its wake-ups on every message published on a channel matching `pattern`."""

    def __init__(self, redis_url: str, pattern: str, wakeups: Iterable[Wakeup]) -> None:
        super().__init__(f"Redis notices {pattern}", wakeups, first_retry=0.5)
        self.redis_url = redis_url
        self.pattern = pattern
        #: Messages seen so far.
        self.messages = 0

    def _follow(self) -> None:
        import redis  # the SDK's other users (requesters) need no Redis client

        client = redis.Redis.from_url(self.redis_url, socket_timeout=None, socket_connect_timeout=5)
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.psubscribe(self.pattern)
            self.outage.ok()
            self.subscribed.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=_STOP_CHECK * 5)
                if message is not None and message.get("type") == "pmessage":
                    self.messages += 1
                    self.wake()
        finally:
            pubsub.close()
            client.close()

    def _interrupt(self) -> None:
        pass  # the loop looks at the stop flag between two reads


@contextmanager
def following(
    ws_url: str | None, *, redis_url: str | None = None, redis_pattern: str = ""
) -> Iterator[Wakeup]:
    """A wake-up fed by the node's new blocks at `ws_url` (None: none) and, when `redis_url` is
    given, by messages on the channels matching `redis_pattern`; its sources stop on exit."""
    wakeup = Wakeup()
    sources: list[_Source] = []
    if ws_url is not None:
        sources.append(NewHeads(ws_url, [wakeup]))
    if redis_url is not None:
        sources.append(RedisChannels(redis_url, redis_pattern, [wakeup]))
    for source in sources:
        source.start()
    try:
        yield wakeup
    finally:
        for source in sources:
            source.close()
