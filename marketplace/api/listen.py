"""The API's listening socket, made here rather than by uvicorn.

Binding here makes a taken port fail with a clear error before anything starts. The socket also
gets TCP_NODELAY, which Linux hands on to every accepted connection: uvicorn writes a response's
headers and body separately, and under Nagle's algorithm the body then waits for the client's
delayed ACK. That cost about 44 ms per artifact request on loopback, and 1.7 ms with the option.
"""

from __future__ import annotations

import socket

__all__ = ["listen"]


def listen(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one), with TCP_NODELAY set."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
