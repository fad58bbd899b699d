"""Alembic runs this for every upgrade of the provider ledger (see marketplace.index.migrate)."""

from marketplace.index.migrate import run_environment
from provider.ledger import ledger_metadata

run_environment(ledger_metadata())
