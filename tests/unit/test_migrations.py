"""Versioned schemas of the chain index and the provider ledger (marketplace.index.migrate):
the first revision builds exactly what the models build, opening a database upgrades it,
databases made before versioning are adopted, newer ones refused, and concurrent openers of
one database end with one whole schema: on SQLite and on PostgreSQL (its migration lock is an
advisory lock)."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text

from marketplace.index import migrate
from marketplace.index.migrate import INDEX, Migrations, SchemaError
from marketplace.index.schema import Base
from marketplace.index.store import Store
from provider.ledger import MIGRATIONS as LEDGER
from provider.ledger import DutyRow, DutyStatus, Ledger, ledger_metadata
from tests.pg_fixture import PostgresServer

ENVIRONMENTS = [(INDEX, Base.metadata), (LEDGER, ledger_metadata())]
IDS = ["index", "ledger"]

Shape = dict[str, dict[str, Any]]


NewUrl = Callable[[str], str]


def _url(where: Path | str) -> str:
    return where if isinstance(where, str) else f"sqlite:///{where}"


def _sql(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def _shape(where: Path | str, ignore: tuple[str, ...] = ()) -> Shape:
    """Every table of the database (a SQLite file or a URL): its columns (type, nullability),
    primary key, indexes and foreign keys, as reflection reads them back."""
    engine = create_engine(_url(where))
    try:
        reflected = MetaData()
        reflected.reflect(engine)
        found = inspect(engine)
        shape: Shape = {}
        for name, table in reflected.tables.items():
            if name in ignore:
                continue
            shape[name] = {
                "columns": {
                    c.name: (str(c.type), c.nullable, c.primary_key) for c in table.columns
                },
                "indexes": {
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in found.get_indexes(name)
                },
                "foreign keys": {
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in found.get_foreign_keys(name)
                },
            }
        return shape
    finally:
        engine.dispose()


def _migrated(where: Path | str, migrations: Migrations) -> None:
    engine = create_engine(_url(where))
    try:
        migrate.upgrade(engine, migrations)
    finally:
        engine.dispose()


def _created(where: Path | str, metadata: MetaData) -> None:
    engine = create_engine(_url(where))
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def _revision(where: Path | str, migrations: Migrations) -> str | None:
    engine = create_engine(_url(where))
    try:
        with engine.connect() as db:
            if not inspect(db).has_table(migrations.version_table):
                return None
            rows = db.execute(text(f"SELECT version_num FROM {migrations.version_table}")).all()
    finally:
        engine.dispose()
    assert len(rows) == 1, rows
    return str(rows[0][0])


@pytest.mark.parametrize(("migrations", "metadata"), ENVIRONMENTS, ids=IDS)
def test_the_first_revision_builds_what_the_models_build(
    new_db_url: NewUrl, migrations: Migrations, metadata: MetaData
) -> None:
    migrated_url, created_url = new_db_url("migrated"), new_db_url("created")
    _migrated(migrated_url, migrations)
    _created(created_url, metadata)
    migrated = _shape(migrated_url, ignore=(migrations.version_table,))
    created = _shape(created_url)
    assert set(migrated) == set(metadata.tables)
    assert migrated == created
    assert _revision(migrated_url, migrations) == migrations.head()


def test_the_shape_comparison_sees_a_missing_index_and_a_changed_column(tmp_path: Path) -> None:
    _created(tmp_path / "a.sqlite3", Base.metadata)
    _created(tmp_path / "b.sqlite3", Base.metadata)
    assert _shape(tmp_path / "a.sqlite3") == _shape(tmp_path / "b.sqlite3")
    with sqlite3.connect(tmp_path / "b.sqlite3") as db:
        db.execute("DROP INDEX ix_jobs_state")
    assert _shape(tmp_path / "a.sqlite3") != _shape(tmp_path / "b.sqlite3")
    with sqlite3.connect(tmp_path / "c.sqlite3") as db:
        db.execute(
            "CREATE TABLE blocks (chain_id INTEGER NOT NULL, number INTEGER NOT NULL, "
            "hash VARCHAR(64) NOT NULL, PRIMARY KEY (chain_id, number))"
        )
    blocks = _shape(tmp_path / "a.sqlite3")["blocks"]
    assert _shape(tmp_path / "c.sqlite3")["blocks"] != blocks


@pytest.mark.parametrize(("migrations", "metadata"), ENVIRONMENTS, ids=IDS)
def test_the_models_need_no_revision_the_migrations_lack(
    new_db_url: NewUrl, migrations: Migrations, metadata: MetaData
) -> None:
    # What `new_revision` would write now: nothing, or the models changed without a revision.
    engine = create_engine(new_db_url("scratch"))
    try:
        with engine.connect() as conn:
            command.upgrade(migrations.config(conn), "head")
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda name, kind, _: kind != "table" or name in metadata.tables
                },
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_opening_twice_changes_nothing_and_both_share_one_file(new_db_url: NewUrl) -> None:
    url = new_db_url("agent")
    for _ in range(2):
        store, ledger = Store(url), Ledger(url)
        store.close()
        ledger.close()
    assert _revision(url, INDEX) == INDEX.head()
    assert _revision(url, LEDGER) == LEDGER.head()
    shape = _shape(url)
    assert set(shape) == (
        set(Base.metadata.tables)
        | set(ledger_metadata().tables)
        | {INDEX.version_table, LEDGER.version_table}
    )


def _made_before_versioning(url: str) -> None:
    """An index as the models made it before versioning: the tables of the first revision."""
    _created(url, Base.metadata)
    _sql(url, "DROP TABLE heartbeats")


def test_an_index_made_by_create_all_is_adopted_with_its_rows(new_db_url: NewUrl) -> None:
    url = new_db_url("relayer")
    _made_before_versioning(url)
    _sql(url, "INSERT INTO checkpoint VALUES (31337, '0xM', '0xR', 41, NULL)")
    store = Store(url)
    try:
        checkpoint = store.checkpoint(31337)
        assert checkpoint is not None and checkpoint.block_number == 41
    finally:
        store.close()
    # Adopted at the first revision, then upgraded to the newest.
    assert _revision(url, INDEX) == INDEX.head()
    assert _shape(url, ignore=(INDEX.version_table,)) == _shape_of_new(new_db_url, INDEX)


def _shape_of_new(new_db_url: NewUrl, migrations: Migrations) -> Shape:
    url = new_db_url("new")
    _migrated(url, migrations)
    return _shape(url, ignore=(migrations.version_table,))


def test_an_older_index_lacking_indexes_and_a_table_gets_them(new_db_url: NewUrl) -> None:
    url = new_db_url("relayer")
    _made_before_versioning(url)
    _sql(url, "DROP INDEX ix_jobs_requester", "DROP TABLE skipped_items")
    Store(url).close()
    assert _shape(url, ignore=(INDEX.version_table,)) == _shape_of_new(new_db_url, INDEX)
    assert _revision(url, INDEX) == INDEX.head()


def test_an_older_index_whose_columns_differ_is_refused_untouched(new_db_url: NewUrl) -> None:
    url = new_db_url("relayer")
    _created(url, Base.metadata)
    _sql(
        url,
        "ALTER TABLE jobs DROP COLUMN premium_bps",
        "ALTER TABLE providers ADD COLUMN region TEXT",
        "DROP INDEX ix_jobs_state",
    )
    before = _shape(url)
    with pytest.raises(SchemaError) as refused:
        Store(url)
    message = str(refused.value)
    assert "jobs lacks premium_bps" in message
    assert "providers has unknown region" in message
    assert "move the database aside" in message
    assert isinstance(refused.value, ValueError)
    # Nothing was created or stamped: the whole open was one transaction.
    assert _shape(url) == before
    assert _revision(url, INDEX) is None


@pytest.mark.parametrize(("migrations", "metadata"), ENVIRONMENTS, ids=IDS)
def test_a_database_from_a_newer_release_is_refused(
    new_db_url: NewUrl, migrations: Migrations, metadata: MetaData
) -> None:
    url = new_db_url("db")
    _migrated(url, migrations)
    _sql(url, f"UPDATE {migrations.version_table} SET version_num = '9999'")
    opener = Store if migrations is INDEX else Ledger
    with pytest.raises(SchemaError, match=r"revision 9999.*upgrade the package \(pip install"):
        opener(url)
    assert _revision(url, migrations) == "9999"


def test_env_py_refuses_to_run_from_the_alembic_command(tmp_path: Path) -> None:

    cfg = INDEX.config()
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with pytest.raises(SchemaError, match="run from code"):
        command.upgrade(cfg, "head")


# ---------------------------------------------------------------------- concurrent openers


def _open_both(url: str, start: Any, results: Any) -> None:
    try:
        start.wait(timeout=30)
        Store(url).close()
        Ledger(url).close()
        results.put("ok")
    except BaseException as exc:  # reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_database_at_once_leave_one_whole_schema(
    new_db_url: NewUrl,
) -> None:
    ctx = multiprocessing.get_context("fork")
    processes = 4
    for attempt in range(3):
        url = new_db_url(f"shared_{attempt}")
        start = ctx.Barrier(processes)
        results = ctx.Queue()
        workers = [
            ctx.Process(target=_open_both, args=(url, start, results)) for _ in range(processes)
        ]
        for w in workers:
            w.start()
        outcomes = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(timeout=30)
        assert outcomes == ["ok"] * processes
        # _revision also checks that each version table holds exactly one row.
        assert _revision(url, INDEX) == INDEX.head()
        assert _revision(url, LEDGER) == LEDGER.head()


def test_threads_opening_one_new_database_at_once_leave_one_whole_schema(
    new_db_url: NewUrl,
) -> None:
    url = new_db_url("shared")
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_both() -> None:
        try:
            start.wait(timeout=30)
            Store(url).close()
            Ledger(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_both) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert _revision(url, INDEX) == INDEX.head()


def test_an_opener_waits_to_switch_a_locked_new_file_to_wal(tmp_path: Path) -> None:
    # A file another process has just created and still holds the write lock on: switching it
    # to WAL answers "database is locked" at once, without SQLite's busy wait.
    path = tmp_path / "relayer.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other VALUES (1)")

    def commit() -> None:
        holder.execute("COMMIT")
        holder.close()

    release = threading.Timer(0.5, commit)
    release.start()
    try:
        Store(f"sqlite:///{path}").close()
    finally:
        release.join()
    assert _revision(path, INDEX) == INDEX.head()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_opener_waits_for_an_upgrade_in_progress(tmp_path: Path) -> None:
    path = tmp_path / "relayer.sqlite3"
    # Another opener (one made before versioning) midway: it holds the write lock and has
    # created one table so far.
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute(
        "CREATE TABLE blocks (chain_id INTEGER NOT NULL, number INTEGER NOT NULL, "
        "hash VARCHAR(66) NOT NULL, PRIMARY KEY (chain_id, number))"
    )
    opened = threading.Event()
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Store(f"sqlite:///{path}").close()
            opened.set()
        except BaseException as exc:
            errors.append(exc)

    opener = threading.Thread(target=open_store)
    opener.start()
    assert not opened.wait(timeout=1.5), "the opener read a schema whose upgrade was unfinished"
    holder.execute("COMMIT")
    holder.close()
    opener.join(timeout=60)
    # It read the database once the other was done, found that table and adopted it.
    assert errors == [] and opened.is_set()
    assert _revision(path, INDEX) == INDEX.head()
    assert _shape(path, ignore=(INDEX.version_table,)) == _shape_of_new(
        lambda name: f"sqlite:///{tmp_path / name}.sqlite3", INDEX
    )


def test_a_postgresql_opener_waits_for_the_migration_lock(postgres: PostgresServer) -> None:
    url = postgres.new_database("locked")
    # Another opener midway: it holds the advisory lock and has created one table so far, in
    # its transaction (invisible to others until it commits).
    holder_engine = create_engine(url)
    holder = holder_engine.connect()
    holder.execute(text(f"SELECT pg_advisory_xact_lock({migrate.MIGRATION_LOCK})"))
    holder.execute(
        text(
            "CREATE TABLE blocks (chain_id INTEGER NOT NULL, number INTEGER NOT NULL, "
            "hash VARCHAR(66) NOT NULL, PRIMARY KEY (chain_id, number))"
        )
    )
    opened = threading.Event()
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Store(url).close()
            opened.set()
        except BaseException as exc:
            errors.append(exc)

    opener = threading.Thread(target=open_store)
    opener.start()
    try:
        assert not opened.wait(timeout=1.5), "the opener migrated while another held the lock"
    finally:
        holder.commit()
        holder.close()
        holder_engine.dispose()
    opener.join(timeout=60)
    # It read the database once the other was done, found that table and adopted it.
    assert errors == [] and opened.is_set()
    assert _revision(url, INDEX) == INDEX.head()
    assert _shape(url, ignore=(INDEX.version_table,)) == _shape_of_new(postgres.new_database, INDEX)


# ---------------------------------------------------------------------- writing a revision


def test_new_revision_follows_the_head_and_upgrades(tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(INDEX.directory, directory, ignore=shutil.ignore_patterns("__pycache__"))
    copy = Migrations(
        name=INDEX.name,
        directory=directory,
        version_table=INDEX.version_table,
        unadoptable=INDEX.unadoptable,
    )
    head = INDEX.head()
    following = f"{int(head) + 1:04d}"
    written = migrate.new_revision(copy, "nothing changed")
    assert written.parent == directory / "versions"
    assert written.name == f"r{following}_nothing_changed.py"
    text = written.read_text()
    assert f"down_revision = '{head}'" in text or f'down_revision = "{head}"' in text
    assert copy.head() == following
    _migrated(tmp_path / "db.sqlite3", copy)
    assert _revision(tmp_path / "db.sqlite3", copy) == following


def test_a_ledger_stores_duties_after_upgrading(new_db_url: NewUrl) -> None:
    ledger = Ledger(new_db_url("ledger"))
    try:
        ledger.add(
            DutyRow(
                task_id="t",
                job_id=1,
                round=0,
                role="executor",
                index=0,
                status=DutyStatus.QUEUED,
                spec_hash="0x" + "ab" * 32,
                sends=0,
                notice_posted=False,
            )
        )
        assert [d.task_id for d in ledger.with_status(DutyStatus.QUEUED)] == ["t"]
    finally:
        ledger.close()
