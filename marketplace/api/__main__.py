"""`python -m marketplace.api`: serve the relayer's HTTP API as `DEPIN_API_*` configures it."""

from __future__ import annotations

import uvicorn

from marketplace.api.app import create_app
from marketplace.api.listen import listen
from marketplace.api.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    sock = listen(settings.host, settings.port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="info"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
