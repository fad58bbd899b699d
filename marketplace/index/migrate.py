"""Versioned schemas for the product's databases: the chain index and the provider's ledger.

Each database has an Alembic migration environment shipped inside the package (`Migrations`
names its folder and its version table). Opening a database runs `upgrade`: every revision the
database lacks is applied, in one transaction, before the caller touches a table.

- A database made before versioning (its tables created directly from the models, no version
  table) is adopted: its tables are checked against the first revision's schema, tables or
  indexes that version would have created are added, and it is stamped at that revision.
- A database stamped by a newer release (a revision this code does not know) is refused with
  `SchemaError`: only the newer package can read it.
- The chain index and the agent's ledger can share one file (the agent keeps both in its own
  database), so each environment has its own version table.
- Several processes open one database at once (the relayer and the API share the index).
  Under SQLite the upgrade holds the database's write lock from its first read of the version
  table to its commit (BEGIN IMMEDIATE); under PostgreSQL it holds a transaction-level advisory
  lock (`MIGRATION_LOCK`) for the same span. Either way a second opener waits and then finds
  the schema current. Threads of one process also take turns, since Alembic keeps its running
  environment in a module global.

A new revision is written by `new_revision` after the models change; `docs/operations.md`
shows how.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, inspect

from marketplace.protocol.errors import ConfigError

__all__ = ["INDEX", "Migrations", "SchemaError", "new_revision", "run_environment", "upgrade"]

log = logging.getLogger(__name__)

#: How long (ms) an opener waits for another one's upgrade to finish.
_LOCK_WAIT_MS = 120_000

#: The PostgreSQL advisory lock key every upgrade holds (one for both environments: the
#: index and the ledger may share a database). Any 64-bit number no other application of the
#: database uses.
MIGRATION_LOCK = 0x6465_7069_6E00_0001

#: Alembic runs `env.py` with its context in a module global: one upgrade per process at a
#: time. Taken before the database lock, so two threads never hold one each.
_ALEMBIC = threading.Lock()


class SchemaError(ConfigError):
    """A database's schema is not one this version of depin-compute can open."""


@dataclass(frozen=True)
class Migrations:
    """One database's migration environment."""

    #: What the database is, for messages: "chain index", "provider ledger".
    name: str
    #: The folder holding env.py and versions/.
    directory: Path
    #: The table recording the database's revision (one per environment: databases may share
    #: a file).
    version_table: str
    #: What to do with a pre-versioning database whose tables this version cannot adopt.
    unadoptable: str

    def config(self, connection: Connection | None = None) -> Config:
        """An Alembic configuration built in code (no alembic.ini), bound to `connection`."""
        cfg = Config()
        # ConfigParser interpolates '%' in option values.
        cfg.set_main_option("script_location", str(self.directory).replace("%", "%%"))
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
        cfg.attributes["version_table"] = self.version_table
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    def scripts(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.config())

    def head(self) -> str:
        head = self.scripts().get_current_head()
        assert head is not None, f"{self.directory} has no revision"
        return head

    def base(self) -> str:
        (base,) = self.scripts().get_bases()
        return base


#: The chain index's environment (marketplace/index/migrations).
INDEX = Migrations(
    name="chain index",
    directory=Path(__file__).resolve().parent / "migrations",
    version_table="alembic_version_index",
    unadoptable=(
        "the index is rebuilt from the chain: move the database aside (or point the relayer's "
        "db_url at a new one) and start the relayer again"
    ),
)


def upgrade(engine: Engine, migrations: Migrations) -> None:
    """Brings the database behind `engine` to the newest revision `migrations` knows.

    Raises `SchemaError` for a database stamped by a newer release or a pre-versioning one
    whose tables differ from the first revision's."""
    with _ALEMBIC, engine.connect() as conn, _write_lock(conn):
        _upgrade(conn, migrations)
        conn.commit()


@contextmanager
def _write_lock(conn: Connection) -> Iterator[None]:
    if conn.dialect.name == "postgresql":
        # DDL is transactional, but two openers that both found no version table would both
        # create the tables and the second would fail on commit: the upgrade takes turns on a
        # transaction-level advisory lock, released by the commit (or the rollback).
        try:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_LOCK_WAIT_MS}")
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            yield
        finally:
            conn.rollback()  # nothing after a commit; the whole upgrade after an error
        return
    if conn.dialect.name != "sqlite":
        # Other databases: transactional DDL makes a concurrent opener fail or wait on its own.
        yield
        return
    previous = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    conn.exec_driver_sql(f"PRAGMA busy_timeout={_LOCK_WAIT_MS}")
    try:
        # The driver opens a transaction only before DML, so DDL would commit statement by
        # statement and a concurrent opener could see half a schema: take the write lock now.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield
    finally:
        conn.rollback()  # nothing after a commit; the whole upgrade after an error
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(previous or 0)}")
        conn.commit()


def _where(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=True)


def _upgrade(conn: Connection, migrations: Migrations) -> None:
    cfg = migrations.config(conn)
    scripts = ScriptDirectory.from_config(cfg)
    context = MigrationContext.configure(conn, opts={"version_table": migrations.version_table})
    current = context.get_current_heads()
    known = {s.revision for s in scripts.walk_revisions()}
    unknown = sorted(set(current) - known)
    if unknown:
        raise SchemaError(
            f"{_where(conn)}: the {migrations.name}'s schema is at revision "
            f"{', '.join(unknown)}, written by a newer depin-compute than this one (which knows "
            f"revisions up to {scripts.get_current_head()}); upgrade the package "
            "(pip install --upgrade depin-compute) to open it"
        )
    if not current:
        _adopt(conn, migrations, scripts)
    if set(current) != {scripts.get_current_head()}:
        command.upgrade(cfg, "head")
        log.info(
            "%s: %s schema upgraded from %s to %s",
            _where(conn),
            migrations.name,
            ", ".join(current) or "nothing",
            scripts.get_current_head(),
        )


def initial_schema(migrations: Migrations) -> MetaData:
    """The tables the first revision creates, read back from a scratch database, with generic
    column types (so they can be created on any database, not only SQLite)."""
    scratch = create_engine("sqlite://")
    try:
        with scratch.connect() as conn:
            command.upgrade(migrations.config(conn), migrations.base())
            schema = MetaData()
            event.listen(schema, "column_reflect", _generic_type)
            schema.reflect(conn)
            schema.remove(schema.tables[migrations.version_table])
            return schema
    finally:
        scratch.dispose()


def _generic_type(_inspector: Any, _table: Any, column: dict[str, Any]) -> None:
    # SQLite reflects its own names (DOUBLE, DATETIME); PostgreSQL knows some of them not.
    column["type"] = column["type"].as_generic()


def _adopt(conn: Connection, migrations: Migrations, scripts: ScriptDirectory) -> None:
    """Stamps a database made before versioning at the first revision, once its tables are
    those that revision creates; a database with none of them is left to `upgrade`."""
    expected = initial_schema(migrations)
    found = inspect(conn)
    present = [t for t in expected.tables.values() if found.has_table(t.name)]
    if not present:
        return
    problems = []
    for table in present:
        columns = {c["name"] for c in found.get_columns(table.name)}
        missing = sorted(set(table.c.keys()) - columns)
        extra = sorted(columns - set(table.c.keys()))
        if missing:
            problems.append(f"{table.name} lacks {', '.join(missing)}")
        if extra:
            problems.append(f"{table.name} has unknown {', '.join(extra)}")
    if problems:
        raise SchemaError(
            f"{_where(conn)}: the {migrations.name} was made by an older depin-compute with "
            f"tables this version cannot adopt ({'; '.join(problems)}); {migrations.unadoptable}"
        )
    # What opening it used to do: create what is missing, leave what exists.
    names = {t.name for t in present}
    absent = [t for t in expected.tables.values() if t.name not in names]
    expected.create_all(conn, tables=absent)
    for table in present:
        indexes = {i["name"] for i in found.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
    command.stamp(migrations.config(conn), scripts.get_bases()[0])
    log.info(
        "%s: %s made before schema versioning, adopted at revision %s",
        _where(conn),
        migrations.name,
        scripts.get_bases()[0],
    )


def run_environment(metadata: MetaData) -> None:
    """The body of each environment's env.py: runs the migrations Alembic chose on the
    connection `upgrade` (or `new_revision`) put in the configuration."""
    from alembic import context

    config = context.config
    connection: Connection | None = config.attributes.get("connection")
    if connection is None:
        raise SchemaError(
            "these migrations run from code, not the alembic command: open the database with "
            "the product (Store, Ledger) or write a revision with "
            "marketplace.index.migrate.new_revision"
        )

    def ours(name: str | None, kind: str, _parents: Any) -> bool:
        # Another environment's tables may share the database.
        return kind != "table" or name in metadata.tables

    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=config.attributes["version_table"],
        include_name=ours,
        # SQLite alters a table by copying it; batch operations do that.
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def new_revision(migrations: Migrations, message: str) -> Path:
    """Writes the revision that takes the newest schema to the current models (autogenerated
    against a scratch database at head; review it before committing) and returns its path."""
    revision = f"{len(list(migrations.scripts().walk_revisions())) + 1:04d}"
    scratch = create_engine("sqlite://")
    try:
        with _ALEMBIC, scratch.connect() as conn:
            cfg = migrations.config(conn)
            command.upgrade(cfg, "head")
            script = command.revision(cfg, message, autogenerate=True, rev_id=revision)
    finally:
        scratch.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
