"""`python -m marketplace.api`: serve the relayer's HTTP API as `DEPIN_API_*` configures it."""

from __future__ import annotations

import uvicorn

from marketplace.api.app import create_app
from marketplace.api.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
