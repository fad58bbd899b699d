"""The relayer service against a real Anvil: assignment, restart without double assignment,
finalization and expiry by the keeper, settings and the status command."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from pydantic import ValidationError
from typer.testing import CliRunner
from web3 import Web3

from marketplace.cli.main import app as cli
from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, advance, funded_account, mine
from marketplace.index.store import Store
from marketplace.protocol.client import JobRequest, JobState
from marketplace.relayer import service
from marketplace.relayer.service import Relayer
from marketplace.relayer.settings import RelayerSettings
from tests.conftest import reverted

pytestmark = pytest.mark.integration


def request(replicas: int = 1, tag: int = 0, **kw: int) -> JobRequest:
    return JobRequest(
        spec_hash=hashlib.sha256(f"relayer-job-{tag}".encode()).digest(),
        units=scenarios.UNITS,
        max_price_per_unit=scenarios.PRICE,
        replicas=replicas,
        **kw,
    )


@pytest.fixture(scope="module")
def _deployed(anvil: Anvil) -> Iterator[scenarios.Cast]:
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
    with reverted(w3):
        cast = scenarios.setup(w3, funded_account(w3), providers=7)
        scenarios.set_audit_rate(cast, 0)
        yield cast


@pytest.fixture
def cast(_deployed: scenarios.Cast) -> Iterator[scenarios.Cast]:
    """Seven providers and no job; what a test does to the chain is undone after it (its
    relayer only steps when the test calls it, and its store is its own)."""
    with reverted(_deployed.w3):
        yield _deployed


def settings_for(
    cast: scenarios.Cast, tmp_path: Path, *, require_heartbeats: bool | None = False
) -> RelayerSettings:
    """Settings of a relayer over `cast`; `require_heartbeats=None` keeps the default (True)."""
    deployment_file = tmp_path / "deployment.json"
    cast.deployment.write(deployment_file)
    assert cast.matcher.signer is not None
    settings = RelayerSettings(
        rpc_url=str(cast.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
        deployment_file=deployment_file,
        private_key="0x" + bytes(cast.matcher.signer.account.key).hex(),
        db_url=f"sqlite:///{tmp_path / 'relayer.sqlite3'}",
        confirmations=0,
    )
    if require_heartbeats is None:
        return settings
    return settings.model_copy(update={"require_heartbeats": require_heartbeats})


def assigned_counts(store: Store, job_ids: list[int]) -> dict[int, int]:
    return {j: Counter(h.event for h in store.history(j))["ProviderAssigned"] for j in job_ids}


def test_relayer_assigns_restarts_finalizes_and_expires(
    cast: scenarios.Cast, tmp_path: Path
) -> None:
    settings = settings_for(cast, tmp_path)
    singles = cast.requester.create_jobs([request(1, i) for i in range(10)])
    triples = cast.requester.create_jobs([request(3, 100 + i) for i in range(2)])
    (too_big,) = cast.requester.create_jobs([request(1, 999, min_vram_gib=80, accept_window=60)])

    relayer = Relayer(settings)
    report = relayer.step()
    assert sorted(report.assigned) == sorted(singles + triples)
    assert report.dropped == []
    assert all(cast.owner.state(j) == JobState.ASSIGNED for j in singles + triples)
    assert cast.owner.state(too_big) == JobState.OPEN
    relayer.close()
    del relayer

    # A new relayer on the same database: nothing again, and new jobs get assigned.
    later = cast.requester.create_jobs([request(1, 200 + i) for i in range(3)])
    relayer = Relayer(settings)
    report = relayer.step()
    assert sorted(report.assigned) == sorted(later) and report.dropped == []
    report = relayer.step()
    assert report.assigned == [] and report.dropped == []
    every = singles + triples + later
    counts = assigned_counts(relayer.store, every)
    assert counts == {j: 3 if j in triples else 1 for j in every}

    # Providers commit (and the triples reveal); time passes; the keeper settles and expires.
    by_address = {p.address: p for p in cast.providers.values()}
    for j in every:
        for part in cast.owner.participants(j):
            by_address[part.provider].commit(j, scenarios.GOOD)
    for j in triples:
        for part in cast.owner.participants(j):
            by_address[part.provider].reveal(j, scenarios.GOOD)
    # The audit rate has a floor above zero; these single-replica jobs must settle unaudited.
    for j in singles + later:
        scenarios.draw_clear(cast.keeper, j)
    advance(cast.w3, cast.owner.params().challenge_window + 1)
    report = relayer.step()
    assert sorted(report.finalized) == sorted(every)
    assert report.expired == [too_big]
    assert all(cast.owner.state(j) == JobState.SETTLED for j in every)
    assert cast.owner.state(too_big) == JobState.EXPIRED

    relayer.step()  # the store catches up with the closes
    assert {j.job_id: j.state for j in relayer.store.jobs()} == {
        **{j: JobState.SETTLED for j in every},
        too_big: JobState.EXPIRED,
    }
    relayer.close()

    result = CliRunner().invoke(cli, ["relayer", "status", "--json", "--db-url", settings.db_url])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["jobs"] == {"settled": len(every), "expired": 1}
    assert status["checkpoints"][0]["market"] == cast.deployment.market
    assert len(status["providers"]) == 7


def test_the_keeper_reads_a_live_job_again_only_once_the_index_sees_it_move(
    cast: scenarios.Cast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the index's moves re-read a view here, however slow the machine.
    monkeypatch.setattr(service, "VIEW_REFRESH_SECONDS", float("inf"))
    relayer = Relayer(settings_for(cast, tmp_path))
    jobs = cast.requester.create_jobs([request(1, 300 + i) for i in range(4)])
    assert sorted(relayer.step().assigned) == sorted(jobs)
    read: list[int] = []
    job = relayer.market.job

    def counted(job_id: int) -> Any:
        read.append(job_id)
        return job(job_id)

    monkeypatch.setattr(relayer.market, "job", counted)
    relayer.step()  # the assignments reach the index: every job is read again
    assert sorted(read) == sorted(jobs)
    read.clear()
    relayer.step()
    relayer.step()
    assert read == []  # nothing moved: no call per job per block

    (seat,) = cast.owner.participants(jobs[0])
    by_address = {p.address: p for p in cast.providers.values()}
    by_address[seat.provider].commit(jobs[0], scenarios.GOOD)
    relayer.step()
    assert set(read) == {jobs[0]}

    # A view is never older than VIEW_REFRESH_SECONDS, whatever the index saw.
    monkeypatch.setattr(service, "VIEW_REFRESH_SECONDS", 0.0)
    read.clear()
    relayer.step()
    assert sorted(set(read)) == sorted(jobs)
    relayer.close()


def test_relayer_staffs_a_challenged_audit_with_drawn_verifiers(
    cast: scenarios.Cast, tmp_path: Path
) -> None:
    relayer = Relayer(settings_for(cast, tmp_path))
    (job,) = cast.requester.create_jobs([request(1, 300)])
    assert relayer.step().assigned == [job]
    executor = cast.owner.participants(job)[0].provider
    by_address = {p.address: p for p in cast.providers.values()}
    by_address[executor].commit(job, scenarios.GOOD)
    mine(cast.w3, 64)  # stake counts in verifier draws from the next 64-block epoch on
    cast.requester.challenge(job)
    assert cast.owner.job(job).needs_staffing

    for _ in range(5):  # a seed from an earlier epoch is re-seeded first, then drawn
        mine(cast.w3)
        report = relayer.step()
        assert report.dropped == [] and report.assigned == []
        if cast.owner.job(job).staffed:
            break
    chain = cast.owner.job(job)
    assert chain.staffed and job in report.staffed
    on_chain = [p.provider for p in cast.owner.verifiers(job)]
    assert len(on_chain) == chain.seats == cast.owner.params().verifiers
    assert executor not in on_chain and cast.requester.address not in on_chain

    relayer.step()  # the listener catches up with the draw
    (audit,) = relayer.store.audit_rounds(job)
    assert (audit.round, audit.seats, audit.staffed_block is not None) == (1, chain.seats, True)
    stored = [p for p in relayer.store.participants(job) if p.verifier]
    assert [p.provider for p in stored] == on_chain
    assert all(p.audit_round == 1 for p in stored)
    row = relayer.store.job(job)
    assert row is not None and row.state is JobState.AUDITING and row.staffed and row.challenged
    assert relayer.step().staffed == [], "a staffed round is not staffed again"
    relayer.close()


def test_by_default_only_heartbeating_providers_are_matched(
    cast: scenarios.Cast, tmp_path: Path
) -> None:
    from marketplace.protocol.heartbeat import MemoryLivenessBook, sign_heartbeat

    settings = settings_for(cast, tmp_path, require_heartbeats=None)
    assert settings.require_heartbeats  # DESIGN: silent providers are not matched
    book = MemoryLivenessBook()
    now = int(cast.w3.eth.get_block("latest")["timestamp"])
    jobs = cast.requester.create_jobs([request(1, 300 + i) for i in range(2)])
    relayer = Relayer(settings, liveness=book, clock=lambda: float(now))
    assert relayer.settings.require_heartbeats
    report = relayer.step()
    assert report.assigned == [] and report.open_jobs == 2
    assert all(cast.owner.state(j) == JobState.OPEN for j in jobs)

    carol = cast.providers["carol"]
    assert carol.signer is not None
    hb = sign_heartbeat(
        carol.signer.account,
        chain_id=cast.deployment.chain_id,
        market=cast.deployment.market,
        timestamp=now,
        load=0,
        capacity=4,
        profiles=[0],
    )
    book.record(carol.address, hb.heartbeat)
    report = relayer.step()
    assert sorted(report.assigned) == jobs
    assert all(cast.owner.participants(j)[0].provider == carol.address for j in jobs)
    relayer.close()


def test_settings_from_the_file_and_the_environment_drive_the_relayer(
    cast: scenarios.Cast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marketplace.protocol.heartbeat import MemoryLivenessBook, sign_heartbeat

    cast.deployment.write(tmp_path / "deployment.json")
    assert cast.matcher.signer is not None
    for name in list(os.environ):
        if name.startswith("DEPIN_RELAYER_"):
            monkeypatch.delenv(name)
    config = tmp_path / "conf" / "depin.toml"
    config.parent.mkdir()
    config.write_text(
        f'rpc_url = "{cast.w3.provider.endpoint_uri}"\n'  # type: ignore[attr-defined]
        'deployment_file = "../deployment.json"\n'
        "[relayer]\nconfirmations = 0\nmax_batch = 3\nheartbeat_interval = 7\n"
        "heartbeat_missed = 9\n"
    )
    monkeypatch.setenv("DEPIN_CONFIG", str(config))
    monkeypatch.setenv("DEPIN_RELAYER_HEARTBEAT_MISSED", "2")  # the variable wins over the file
    monkeypatch.setenv(
        "DEPIN_RELAYER_PRIVATE_KEY", "0x" + bytes(cast.matcher.signer.account.key).hex()
    )
    monkeypatch.setenv("DEPIN_RELAYER_DB_URL", f"sqlite:///{tmp_path / 'relayer.sqlite3'}")
    window = 7 * 2

    now = int(cast.w3.eth.get_block("latest")["timestamp"])
    book = MemoryLivenessBook()
    for name, age in (("carol", window), ("dave", window), ("erin", window + 1)):
        provider = cast.providers[name]
        assert provider.signer is not None
        hb = sign_heartbeat(
            provider.signer.account,
            chain_id=cast.deployment.chain_id,
            market=cast.deployment.market,
            timestamp=now - age,
            load=0,
            capacity=4,
            profiles=[0],
        )
        book.record(provider.address, hb.heartbeat)
    jobs = cast.requester.create_jobs([request(1, 400 + i) for i in range(4)])

    relayer = Relayer(RelayerSettings(), liveness=book, clock=lambda: float(now))
    assert sorted(relayer.step().assigned) == sorted(jobs)
    relayer.step()  # the listener applies the assignments
    # Live at exactly interval x missed seconds of silence, not one second later.
    executors = {cast.owner.participants(j)[0].provider for j in jobs}
    assert executors == {cast.providers["carol"].address, cast.providers["dave"].address}
    # Four assignments, at most three per transaction.
    txs = {
        h.tx_hash for j in jobs for h in relayer.store.history(j) if h.event == "ProviderAssigned"
    }
    assert len(txs) == 2
    relayer.close()


def replace_settings(settings: RelayerSettings, **changes: object) -> RelayerSettings:
    return settings.model_copy(update=changes)


# ---------------------------------------------------------------------- settings, no chain


def test_settings_need_exactly_one_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PRIVATE_KEY", "KEYSTORE_FILE", "KEYSTORE_PASSWORD"):
        monkeypatch.delenv(f"DEPIN_RELAYER_{name}", raising=False)
    with pytest.raises(ValidationError, match="exactly one way"):
        RelayerSettings()
    key = Account.create()
    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(key.key, "pw", iterations=2)))
    with pytest.raises(ValidationError, match="both are set"):
        RelayerSettings(private_key="0x" + key.key.hex(), keystore_file=keystore)
    with pytest.raises(ValidationError, match="KEYSTORE_PASSWORD"):
        RelayerSettings(keystore_file=keystore)

    monkeypatch.setenv("DEPIN_RELAYER_KEYSTORE_FILE", str(keystore))
    monkeypatch.setenv("DEPIN_RELAYER_KEYSTORE_PASSWORD", "pw")
    monkeypatch.setenv("DEPIN_RELAYER_CONFIRMATIONS", "3")
    settings = RelayerSettings()
    assert settings.account().address == key.address
    assert settings.confirmations == 3 and settings.max_batch == 50
    assert settings.require_heartbeats
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8700)
    bad = RelayerSettings(keystore_file=keystore, keystore_password="wrong")
    with pytest.raises(Exception, match="KEYSTORE_PASSWORD"):
        bad.account()


def test_run_without_a_key_exits_1_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PRIVATE_KEY", "KEYSTORE_FILE", "KEYSTORE_PASSWORD"):
        monkeypatch.delenv(f"DEPIN_RELAYER_{name}", raising=False)
    result = CliRunner().invoke(cli, ["relayer", "run"])
    assert result.exit_code == 1
    assert "DEPIN_RELAYER_PRIVATE_KEY" in result.output
