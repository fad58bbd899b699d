"""Splitting an input set into shards and merging their outputs, without a chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from marketplace.requester import InputError, JobDraft, JobNotFound
from marketplace.requester.shard import (
    ShardGroup,
    ShardRecord,
    ShardStore,
    merge_outputs,
    shard_drafts,
    split_rows,
    split_safetensors,
    split_units,
)


def test_rows_split_into_contiguous_runs_differing_by_at_most_one() -> None:
    assert split_rows(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_rows(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(InputError, match=r"3 rows cannot make 4 shards.*--shard 3 or fewer"):
        split_rows(3, 4)
    with pytest.raises(InputError, match="--shard must be from 1 to 256"):
        split_rows(3, 0)


@pytest.mark.parametrize("total", [3, 4, 10, 99, 1000])
def test_units_are_divided_in_proportion_and_sum_to_the_total(total: int) -> None:
    units = split_units(total, [5, 1, 3])
    assert sum(units) == total and min(units) >= 1
    assert split_units(9, [3, 3, 3]) == [3, 3, 3]
    with pytest.raises(InputError, match="2 units cannot pay 3 shards"):
        split_units(2, [1, 1, 1])


def test_safetensors_split_along_dim_0_keeps_bits_and_copies_scalars() -> None:
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    ids = torch.arange(7, dtype=torch.int64)
    scale = torch.tensor(0.5)
    data = bytes(safetensors.torch.save({"x": x, "ids": ids, "scale": scale}))
    parts = [safetensors.torch.load(p) for p in split_safetensors(data, 3)]
    assert [p["x"].shape[0] for p in parts] == [3, 2, 2]
    assert torch.equal(torch.cat([p["x"] for p in parts]), x)
    assert torch.equal(torch.cat([p["ids"] for p in parts]), ids)
    assert all(torch.equal(p["scale"], scale) for p in parts)


def test_a_batch_of_mixed_first_sizes_or_only_scalars_is_refused() -> None:
    mixed = bytes(safetensors.torch.save({"a": torch.ones(4, 2), "b": torch.ones(3)}))
    with pytest.raises(InputError, match="different first sizes"):
        split_safetensors(mixed, 2)
    scalar = bytes(safetensors.torch.save({"a": torch.tensor(1.0)}))
    with pytest.raises(InputError, match="submit it unsharded"):
        split_safetensors(scalar, 2)


def test_embed_drafts_hold_the_sentences_in_order(tmp_path: Path) -> None:
    draft = JobDraft("embed", 10, sentences=tuple(f"s{i}" for i in range(5)), units=50)
    drafts = shard_drafts(draft, 2, tmp_path)
    texts = [json.loads(d.inputs[0].read_text()) for d in drafts]
    assert texts == [["s0", "s1", "s2"], ["s3", "s4"]]
    assert [d.units for d in drafts] == [30, 20]
    assert all(d.sentences is None for d in drafts)
    with pytest.raises(InputError, match="matmul jobs are not sharded"):
        shard_drafts(JobDraft("matmul", 10, parameters={"n": 4, "seed": 1}), 2, tmp_path)


def test_merge_concatenates_in_order_and_sets_aside_scalars() -> None:
    parts: list[dict[str, np.ndarray[Any, Any]]] = [
        {"y": np.arange(4, dtype=np.float32).reshape(2, 2), "total": np.ones(())},
        {"y": np.arange(4, 6, dtype=np.float32).reshape(1, 2), "total": np.ones(())},
    ]
    merged, unmerged = merge_outputs(parts)
    assert merged["y"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert unmerged == ("total",)


def test_a_group_is_kept_and_an_earlier_chains_folder_is_set_aside(tmp_path: Path) -> None:
    store = ShardStore(tmp_path, 31337, "0xABC")
    group = ShardGroup(
        group=1,
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
        shards=[ShardRecord(index=0, job_id=1, rows=2, input="shard-0.json", units=2)],
    )
    for round_ in range(2):
        pending = store.pending()
        (pending / "shard-0.json").write_text(f'["round {round_}"]')
        store.adopt(pending, group)
    assert store.load(1) == group and store.groups() == [1]
    assert (store.group_folder(1) / "shard-0.json").read_text() == '["round 1"]'
    assert len(list(store.folder.glob("group-1.earlier-*"))) == 1
    with pytest.raises(JobNotFound, match="no shard group 2"):
        store.load(2)
