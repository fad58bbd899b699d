"""Versioned schemas of the chain index and the provider ledger (marketplace.index.migrate):
the first revision builds exactly what the models build, opening a database upgrades it,
databases made before versioning are adopted, newer ones refused, and concurrent openers of
one file end with one whole schema."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect

from marketplace.index import migrate
from marketplace.index.migrate import INDEX, Migrations, SchemaError
from marketplace.index.schema import Base
from marketplace.index.store import Store
from provider.ledger import MIGRATIONS as LEDGER
from provider.ledger import DutyRow, DutyStatus, Ledger, ledger_metadata

ENVIRONMENTS = [(INDEX, Base.metadata), (LEDGER, ledger_metadata())]
IDS = ["index", "ledger"]

Shape = dict[str, dict[str, Any]]


def _shape(path: Path, ignore: tuple[str, ...] = ()) -> Shape:
    """Every table of the database: its columns (type, nullability), primary key, indexes and
    foreign keys, as reflection reads them back."""
    engine = create_engine(f"sqlite:///{path}")
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


def _migrated(path: Path, migrations: Migrations) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine, migrations)
    finally:
        engine.dispose()


def _created(path: Path, metadata: MetaData) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def _revision(path: Path, migrations: Migrations) -> str | None:
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if migrations.version_table not in tables:
            return None
        rows = db.execute(f"SELECT version_num FROM {migrations.version_table}").fetchall()
    assert len(rows) == 1, rows
    return str(rows[0][0])


@pytest.mark.parametrize(("migrations", "metadata"), ENVIRONMENTS, ids=IDS)
def test_the_first_revision_builds_what_the_models_build(
    tmp_path: Path, migrations: Migrations, metadata: MetaData
) -> None:
    _migrated(tmp_path / "migrated.sqlite3", migrations)
    _created(tmp_path / "created.sqlite3", metadata)
    migrated = _shape(tmp_path / "migrated.sqlite3", ignore=(migrations.version_table,))
    created = _shape(tmp_path / "created.sqlite3")
    assert set(migrated) == set(metadata.tables)
    assert migrated == created
    assert _revision(tmp_path / "migrated.sqlite3", migrations) == migrations.head()


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
    migrations: Migrations, metadata: MetaData
) -> None:
    # What `new_revision` would write now: nothing, or the models changed without a revision.
    engine = create_engine("sqlite://")
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


def test_opening_twice_changes_nothing_and_both_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.sqlite3"
    url = f"sqlite:///{path}"
    for _ in range(2):
        store, ledger = Store(url), Ledger(url)
        store.close()
        ledger.close()
    assert _revision(path, INDEX) == INDEX.head()
    assert _revision(path, LEDGER) == LEDGER.head()
    shape = _shape(path)
    assert set(shape) == (
        set(Base.metadata.tables)
        | set(ledger_metadata().tables)
        | {INDEX.version_table, LEDGER.version_table}
    )


def test_an_index_made_by_create_all_is_adopted_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "relayer.sqlite3"
    _created(path, Base.metadata)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO checkpoint VALUES (31337, '0xM', '0xR', 41, NULL)")
    store = Store(f"sqlite:///{path}")
    try:
        checkpoint = store.checkpoint(31337)
        assert checkpoint is not None and checkpoint.block_number == 41
    finally:
        store.close()
    assert _revision(path, INDEX) == INDEX.base()
    assert _shape(path, ignore=(INDEX.version_table,)) == _shape_of_new(tmp_path, INDEX)


def _shape_of_new(tmp_path: Path, migrations: Migrations) -> Shape:
    _migrated(tmp_path / "new.sqlite3", migrations)
    return _shape(tmp_path / "new.sqlite3", ignore=(migrations.version_table,))


def test_an_older_index_lacking_indexes_and_a_table_gets_them(tmp_path: Path) -> None:
    path = tmp_path / "relayer.sqlite3"
    _created(path, Base.metadata)
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX ix_jobs_requester")
        db.execute("DROP TABLE skipped_items")
    Store(f"sqlite:///{path}").close()
    assert _shape(path, ignore=(INDEX.version_table,)) == _shape_of_new(tmp_path, INDEX)
    assert _revision(path, INDEX) == INDEX.head()


def test_an_older_index_whose_columns_differ_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "relayer.sqlite3"
    _created(path, Base.metadata)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE jobs DROP COLUMN premium_bps")
        db.execute("ALTER TABLE providers ADD COLUMN region TEXT")
        db.execute("DROP INDEX ix_jobs_state")
    before = _shape(path)
    with pytest.raises(SchemaError) as refused:
        Store(f"sqlite:///{path}")
    message = str(refused.value)
    assert "jobs lacks premium_bps" in message
    assert "providers has unknown region" in message
    assert "move the database aside" in message
    assert isinstance(refused.value, ValueError)
    # Nothing was created or stamped: the whole open was one transaction.
    assert _shape(path) == before
    assert _revision(path, INDEX) is None


@pytest.mark.parametrize(("migrations", "metadata"), ENVIRONMENTS, ids=IDS)
def test_a_database_from_a_newer_release_is_refused(
    tmp_path: Path, migrations: Migrations, metadata: MetaData
) -> None:
    path = tmp_path / "db.sqlite3"
    _migrated(path, migrations)
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {migrations.version_table} SET version_num = '9999'")
    opener = Store if migrations is INDEX else Ledger
    with pytest.raises(SchemaError, match=r"revision 9999.*upgrade the package \(pip install"):
        opener(f"sqlite:///{path}")
    assert _revision(path, migrations) == "9999"


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


def test_processes_opening_one_new_file_at_once_leave_one_whole_schema(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    processes = 4
    for attempt in range(3):
        path = tmp_path / f"shared-{attempt}.sqlite3"
        start = ctx.Barrier(processes)
        results = ctx.Queue()
        workers = [
            ctx.Process(target=_open_both, args=(f"sqlite:///{path}", start, results))
            for _ in range(processes)
        ]
        for w in workers:
            w.start()
        outcomes = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(timeout=30)
        assert outcomes == ["ok"] * processes
        assert _revision(path, INDEX) == INDEX.head()
        assert _revision(path, LEDGER) == LEDGER.head()
        with sqlite3.connect(path) as db:
            for table in (INDEX.version_table, LEDGER.version_table):
                assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)


def test_threads_opening_one_new_file_at_once_leave_one_whole_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
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
    assert _revision(tmp_path / "shared.sqlite3", INDEX) == INDEX.head()


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
    assert _revision(path, INDEX) == INDEX.base()
    assert _shape(path, ignore=(INDEX.version_table,)) == _shape_of_new(tmp_path, INDEX)


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
    written = migrate.new_revision(copy, "nothing changed")
    assert written.parent == directory / "versions"
    assert written.name == "r0002_nothing_changed.py"
    text = written.read_text()
    assert "down_revision = '0001'" in text or 'down_revision = "0001"' in text
    assert copy.head() == "0002"
    _migrated(tmp_path / "db.sqlite3", copy)
    assert _revision(tmp_path / "db.sqlite3", copy) == "0002"


def test_a_ledger_stores_duties_after_upgrading(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
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
