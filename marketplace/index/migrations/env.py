"""Alembic runs this for every upgrade of the chain index (see marketplace.index.migrate)."""

from marketplace.index.migrate import run_environment
from marketplace.index.schema import Base

run_environment(Base.metadata)
