"""Sharded batch jobs: one input set split into N jobs created in one transaction, run by up to N
providers at once, and merged back in order.

What is split:

- ``embed``: the sentences (of every input file, in order) into N contiguous runs whose sizes
  differ by at most one;
- ``torchscript`` and ``export``: the safetensors input along dimension 0. Every tensor with a
  dimension is split (all must have the same first size, the batch); 0-dim tensors (scalars such
  as a temperature) go to every shard unchanged. A program must take a batch of any size there
  (torch.export: a dynamic first dimension).

Pricing: the shards are one batch. Given units are divided among the shards in proportion to
their rows (each at least 1); without them each shard takes its kind's default (embed: its
sentence count, so N shards cost what one job does; torchscript and export: 1 each). The whole
escrow is quoted, checked and pulled at once (`Requester.submit_many`).

Merging: each shard's result is verified against its own job's on-chain commitment, then every
output with a first dimension is concatenated along it in shard order. The merge equals the
unsharded run bit for bit when a row's output does not depend on the other rows of its batch: a
row-wise program, or embed with ``batch_size`` 1. Embed with larger batches pads each batch of
sentences to its longest one, and a sentence's embedding bits depend on that padding, so its
shards agree with the unsharded run to about 1e-7, not bit for bit (each shard is still exactly
what every honest provider computes for it). Outputs without a first dimension (a whole-batch
sum) cannot be merged and stay per shard.

The group (its shards' job ids, their inputs and what is needed to resubmit one) is kept by the
requester, not on the chain: ``<shard dir>/<chain id>-<market>/group-<first job id>/``, with
``group.json`` and one input file per shard. A shard whose job was refunded, expired or
settled on a failure is resubmitted alone (`Requester.resubmit_shard`); the group then names
the new job and the merge uses it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from pydantic import BaseModel, ConfigDict

from marketplace.protocol.spec import ParamValue
from marketplace.requester.errors import InputError, JobNotFound
from marketplace.requester.inputs import JobDraft, read_sentences

__all__ = [
    "MAX_SHARDS",
    "ShardGroup",
    "ShardRecord",
    "ShardStore",
    "merge_outputs",
    "shard_drafts",
    "split_rows",
    "split_safetensors",
    "split_units",
]

#: Most shards one group may have: one createJobs transaction holds them all.
MAX_SHARDS: Final = 256

_ITEM_BYTES: Final[dict[str, int]] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}


def split_rows(rows: int, shards: int) -> list[tuple[int, int]]:
    """[start, stop) of each of `shards` contiguous runs of `rows`, sizes differing by <= 1."""
    if not 1 <= shards <= MAX_SHARDS:
        raise InputError(f"--shard must be from 1 to {MAX_SHARDS}, got {shards}")
    if rows < shards:
        raise InputError(
            f"{rows} rows cannot make {shards} shards (each needs at least one); use --shard "
            f"{max(1, rows)} or fewer"
        )
    base, extra = divmod(rows, shards)
    out, start = [], 0
    for i in range(shards):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def split_units(total: int, sizes: Sequence[int]) -> list[int]:
    """`total` units divided in proportion to `sizes` (largest remainders), each at least 1."""
    if total < len(sizes):
        raise InputError(
            f"{total} units cannot pay {len(sizes)} shards (each job takes at least 1 unit); "
            f"give --units {len(sizes)} or more, or fewer shards"
        )
    rows = sum(sizes)
    spare = total - len(sizes)
    exact = [spare * s / rows for s in sizes]
    units = [1 + math.floor(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (units[i] - 1 - exact[i], i))
    for i in order[: total - sum(units)]:
        units[i] += 1
    return units


def _header(data: bytes, where: str) -> tuple[dict[str, Any], int]:
    if len(data) < 8:
        raise InputError(f"{where} is not a safetensors file (too short)")
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{where} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise InputError(f"{where} is not a safetensors file (its header is not an object)")
    return header, 8 + size


def split_safetensors(data: bytes, shards: int, *, where: str = "the input") -> list[bytes]:
    """The safetensors file `data` split along dimension 0 into `shards` files (see the module
    docstring); the bytes of each tensor row are copied, never converted."""
    header, body = _header(data, where)
    metadata = header.pop("__metadata__", None)
    batch: int | None = None
    for name, entry in header.items():
        dtype, shape = entry.get("dtype"), entry.get("shape")
        if dtype not in _ITEM_BYTES:
            raise InputError(f"{where}: tensor {name!r} has dtype {dtype!r}, which is not split")
        if shape:
            if batch is not None and shape[0] != batch:
                raise InputError(
                    f"{where}: tensors have different first sizes ({batch} and {name!r}'s "
                    f"{shape[0]}); a sharded input is one batch along dimension 0, with only "
                    "0-dim tensors besides it"
                )
            batch = int(shape[0])
    if batch is None:
        raise InputError(
            f"{where} has no tensor with a dimension to split along; submit it unsharded"
        )
    ranges = split_rows(batch, shards)
    out = []
    for start, stop in ranges:
        tensors: dict[str, tuple[str, list[int], bytes]] = {}
        for name, entry in header.items():
            begin, end = (int(x) for x in entry["data_offsets"])
            raw = data[body + begin : body + end]
            shape = [int(d) for d in entry["shape"]]
            if shape:
                row = _ITEM_BYTES[entry["dtype"]] * math.prod(shape[1:])
                raw = raw[start * row : stop * row]
                shape = [stop - start, *shape[1:]]
            tensors[name] = (entry["dtype"], shape, raw)
        out.append(_safetensors(tensors, metadata))
    return out


def _safetensors(
    tensors: Mapping[str, tuple[str, list[int], bytes]], metadata: Any | None
) -> bytes:
    header: dict[str, Any] = {} if metadata is None else {"__metadata__": metadata}
    offset = 0
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # aligned data, as safetensors writes it
    return len(text).to_bytes(8, "little") + text + b"".join(tensors[n][2] for n in sorted(tensors))


def shard_drafts(draft: JobDraft, shards: int, folder: Path) -> list[JobDraft]:
    """One draft per shard of `draft`, their inputs written to `folder` (shard-<i>.json or
    .safetensors), units divided as the module docstring says."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    sizes: list[int] = []
    if draft.kind == "embed":
        if draft.sentences is not None:
            sentences = list(draft.sentences)
        else:
            sentences = [s for p in draft.inputs for s in read_sentences(p)]
        for i, (start, stop) in enumerate(split_rows(len(sentences), shards)):
            path = folder / f"shard-{i}.json"
            path.write_text(json.dumps(sentences[start:stop], ensure_ascii=False), "utf-8")
            paths.append(path)
            sizes.append(stop - start)
    elif draft.kind in ("torchscript", "export"):
        if len(draft.inputs) != 1:
            raise InputError(
                f"{draft.kind} takes exactly one input, a safetensors file; got {len(draft.inputs)}"
            )
        source = draft.inputs[0]
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {source} ({exc.strerror or exc}); check it") from None
        for i, part in enumerate(split_safetensors(data, shards, where=str(source))):
            path = folder / f"shard-{i}.safetensors"
            path.write_bytes(part)
            paths.append(path)
            sizes.append(int(_batch(part)))
    else:
        raise InputError(
            f"{draft.kind} jobs are not sharded (only embed, torchscript and export split an "
            "input set); submit it without --shard"
        )
    units: list[int | None] = (
        [None] * shards if draft.units is None else list(split_units(draft.units, sizes))
    )
    return [
        JobDraft(
            kind=draft.kind,
            max_price_per_unit=draft.max_price_per_unit,
            inputs=(path,),
            model=draft.model,
            parameters=dict(draft.parameters),
            units=u,
            replicas=draft.replicas,
            profile=draft.profile,
            accept_window=draft.accept_window,
            exec_window=draft.exec_window,
            min_vram_gib=draft.min_vram_gib,
        )
        for path, u in zip(paths, units, strict=True)
    ]


def _batch(data: bytes) -> int:
    header, _ = _header(data, "a shard")
    return max(
        (int(e["shape"][0]) for n, e in header.items() if n != "__metadata__" and e["shape"]),
        default=1,
    )


def merge_outputs(
    parts: Sequence[Mapping[str, np.ndarray[Any, Any]]],
) -> tuple[dict[str, np.ndarray[Any, Any]], tuple[str, ...]]:
    """Every output with a first dimension concatenated along it, in shard order; and the names
    of the outputs that cannot be merged (0-dim, or differing in dtype or trailing shape)."""
    names = sorted(set().union(*(p.keys() for p in parts))) if parts else []
    merged: dict[str, np.ndarray[Any, Any]] = {}
    unmerged: list[str] = []
    for name in names:
        arrays = [p.get(name) for p in parts]
        first = arrays[0]
        if (
            first is None
            or first.ndim == 0
            or any(
                a is None or a.ndim == 0 or a.dtype != first.dtype or a.shape[1:] != first.shape[1:]
                for a in arrays
            )
        ):
            unmerged.append(name)
            continue
        merged[name] = np.concatenate([a for a in arrays if a is not None], axis=0)
    return merged, tuple(unmerged)


# ---------------------------------------------------------------------------- the group


class ShardRecord(BaseModel):
    """One shard: its current job and the jobs it replaced (refunded or failed)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    job_id: int
    rows: int
    #: The shard's input file, relative to the group's folder.
    input: str
    units: int | None
    replaced: list[int] = []


class ShardGroup(BaseModel):
    """A sharded job as the requester keeps it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    group: int
    chain_id: int
    market: str
    requester: str
    kind: str
    #: The model as the shards' specs name it (embed: its name; else the artifact's sha256).
    model: str
    parameters: dict[str, ParamValue]
    max_price_per_unit: int
    replicas: int
    profile: str
    accept_window: int
    exec_window: int
    min_vram_gib: int
    shards: list[ShardRecord]

    @property
    def job_ids(self) -> list[int]:
        return [s.job_id for s in self.shards]

    def draft(self, index: int, folder: Path) -> JobDraft:
        """The draft that submits shard `index` again (same spec, so the same work)."""
        shard = self.shards[index]
        return JobDraft(
            kind=self.kind,
            max_price_per_unit=self.max_price_per_unit,
            inputs=(folder / shard.input,),
            model=self.model,
            parameters=dict(self.parameters),
            units=shard.units,
            replicas=self.replicas,
            profile=self.profile,
            accept_window=self.accept_window,
            exec_window=self.exec_window,
            min_vram_gib=self.min_vram_gib,
        )


class ShardStore:
    """Shard groups of one deployment, kept in `root/<chain id>-<market>/`."""

    def __init__(self, root: Path, chain_id: int, market: str) -> None:
        self.folder = Path(root).expanduser() / f"{chain_id}-{market.lower()}"

    def pending(self) -> Path:
        """A fresh folder for the shard inputs of a group not yet created."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="pending-", dir=self.folder))

    def group_folder(self, group: int) -> Path:
        return self.folder / f"group-{group}"

    def adopt(self, pending: Path, group: ShardGroup) -> None:
        """Moves the pending folder to the group's own and writes its record. A folder already
        there is from an earlier chain with the same id and market address (a restarted devnet):
        it is kept aside, renamed, rather than refused after the jobs exist."""
        target = self.group_folder(group.group)
        if target.exists():
            stale = target.with_name(f"{target.name}.earlier-{time.time_ns()}")
            os.replace(target, stale)
        os.replace(pending, target)
        self.save(group)

    def save(self, group: ShardGroup) -> None:
        """Writes the group's record atomically (temp file + rename)."""
        folder = self.group_folder(group.group)
        fd, tmp = tempfile.mkstemp(prefix=".group.", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(group.model_dump_json(indent=2))
            os.replace(tmp, folder / "group.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, group: int) -> ShardGroup:
        path = self.group_folder(group) / "group.json"
        try:
            return ShardGroup.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise JobNotFound(
                f"no shard group {group} in {self.folder}; a group is named by the first job id "
                "`depin job submit --shard` printed, and kept on the machine that submitted it "
                "(DEPIN_REQUESTER_SHARD_DIR)"
            ) from None

    def groups(self) -> list[int]:
        if not self.folder.is_dir():
            return []
        return sorted(
            int(p.name.removeprefix("group-"))
            for p in self.folder.glob("group-*")
            if p.name.removeprefix("group-").isdigit()
        )
