"""The shard store's records of groups whose submit has not finished, without a chain (the
recovery from the chain runs on Anvil in tests/integration/test_workloads.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marketplace.requester.shard import PendingCreate, ShardGroup, ShardRecord, ShardStore


def _group(pending: PendingCreate | None) -> ShardGroup:
    return ShardGroup(
        group=0 if pending else 7,
        chain_id=31337,
        market="0xABC",
        requester="0x" + "11" * 20,
        kind="embed",
        model="m",
        parameters={},
        max_price_per_unit=1,
        replicas=1,
        profile="p",
        accept_window=60,
        exec_window=60,
        min_vram_gib=0,
        shards=[
            ShardRecord(index=i, job_id=0 if pending else 7 + i, rows=1, input=f"{i}", units=1)
            for i in range(2)
        ],
        pending=pending,
    )


SENT = PendingCreate(
    nonce=4,
    after_block=99,
    spec_hashes=["aa" * 32, "bb" * 32],
    inputs=["cc" * 32] * 2,
    recorded_at=1.0,
)


def test_a_pending_record_is_listed_until_completed_then_lives_in_its_group_folder(
    tmp_path: Path,
) -> None:
    store = ShardStore(tmp_path, 31337, "0xABC")
    plan = store.pending()
    assert store.unresolved() == []  # a plan never sent has no record: nothing to settle
    store.record_pending(plan, _group(SENT))
    ((folder, found),) = store.unresolved()
    assert folder == plan and found.pending == SENT and store.groups() == []
    with pytest.raises(ValueError, match="pending cleared"):
        store.adopt(plan, _group(SENT))
    store.adopt(plan, _group(None))
    assert store.unresolved() == [] and store.groups() == [7]
    assert store.load(7) == _group(None) and not plan.exists()


def test_a_record_can_be_forgotten_or_set_aside(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, 31337, "0xABC")
    with pytest.raises(ValueError, match="needs the transaction"):
        store.record_pending(store.pending(), _group(None))
    plan = store.pending()
    store.record_pending(plan, _group(SENT))
    store.forget_pending(plan)
    assert plan.is_dir() and store.unresolved() == []
    store.record_pending(plan, _group(SENT))
    (plan / "0").write_text("[]")
    aside = store.abandon(plan)
    assert aside.name.startswith("abandoned-") and (aside / "0").read_text() == "[]"
    assert store.unresolved() == [] and store.groups() == []
