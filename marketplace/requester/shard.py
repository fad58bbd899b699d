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

Crash safety: the group's record is written before its createJobs transaction is sent, into a
``pending-*`` folder, marked pending with what identifies the transaction (the wallet's nonce for
it, the block before it, each shard's spec and input hash); after the receipt it is completed
(job ids filled in) and the folder renamed to ``group-<first job id>``. A submit that died in
between leaves a pending record that `resolve_pending` settles from the chain: the requester's
JobCreated logs since the recorded block holding the shards' spec hashes, in order, on consecutive
job ids, complete it; none there while the recorded nonce is used by another transaction means
the batch was never created (nothing paid) and the record is set aside as ``abandoned-*``; with
the nonce still free the transaction may yet be mined, and the record stays pending.
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
from eth_utils.address import to_checksum_address
from pydantic import BaseModel, ConfigDict

from marketplace.protocol.client import JobCreated, Market
from marketplace.protocol.spec import ParamValue
from marketplace.requester.errors import InputError, JobNotFound
from marketplace.requester.inputs import JobDraft, read_sentences

__all__ = [
    "MAX_SHARDS",
    "PendingCreate",
    "Resolution",
    "ShardGroup",
    "ShardRecord",
    "ShardStore",
    "merge_outputs",
    "resolve_pending",
    "resolve_resubmits",
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


class PendingCreate(BaseModel):
    """What identifies the createJobs transaction of a group recorded before it was sent."""

    model_config = ConfigDict(extra="forbid")

    #: The wallet's nonce the transaction takes (its next one when the record was written).
    nonce: int
    #: The head block when the record was written: the transaction is mined after it.
    after_block: int
    #: Each shard's spec hash (hex), in shard order: what its JobCreated event carries.
    spec_hashes: list[str]
    #: Each shard's input sha256 (hex), in shard order.
    inputs: list[str]
    #: Unix time the record was written.
    recorded_at: float


class ShardRecord(BaseModel):
    """One shard: its current job and the jobs it replaced (refunded or failed). `pending` is
    set while a resubmission of it is being sent (its job not known yet)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    job_id: int
    rows: int
    #: The shard's input file, relative to the group's folder.
    input: str
    units: int | None
    replaced: list[int] = []
    pending: PendingCreate | None = None


class ShardGroup(BaseModel):
    """A sharded job as the requester keeps it (see the module docstring). While `pending` is
    set the jobs are not known yet: `group` and every shard's `job_id` are 0."""

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
    pending: PendingCreate | None = None

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

    def record_pending(self, pending: Path, group: ShardGroup) -> None:
        """Writes the record of a group about to be created (`group.pending` set) into its
        pending folder, durably, before the transaction is sent."""
        if group.pending is None:
            raise ValueError("a pending record needs the transaction it waits for")
        self._write(pending, group)

    def forget_pending(self, pending: Path) -> None:
        """Drops the record of a group whose transaction never reached the node, leaving its
        folder a plan again."""
        (pending / "group.json").unlink(missing_ok=True)
        _sync_dir(pending)

    def adopt(self, pending: Path, group: ShardGroup) -> None:
        """Completes a created group: its record (pending cleared) is written in the pending
        folder first, then the folder is renamed to the group's own, so a crash at any point
        leaves either a pending record or a complete one. A folder already there is from an
        earlier chain with the same id and market address (a restarted devnet): it is kept
        aside, renamed, rather than refused after the jobs exist."""
        if group.pending is not None:
            raise ValueError("adopt a group once its jobs are known (pending cleared)")
        self._write(pending, group)
        self._rename(pending, group.group)

    def _rename(self, pending: Path, group: int) -> None:
        target = self.group_folder(group)
        if target.exists():
            stale = target.with_name(f"{target.name}.earlier-{time.time_ns()}")
            os.replace(target, stale)
        os.replace(pending, target)
        _sync_dir(self.folder)

    def abandon(self, pending: Path) -> Path:
        """Sets aside the folder of a group the chain shows was never created (nothing paid);
        its inputs stay readable there."""
        target = pending.with_name("abandoned-" + pending.name.removeprefix("pending-"))
        os.replace(pending, target)
        return target

    def save(self, group: ShardGroup) -> None:
        """Writes a created group's record atomically (temp file + rename)."""
        self._write(self.group_folder(group.group), group)

    def _write(self, folder: Path, group: ShardGroup) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".group.", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(group.model_dump_json(indent=2))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, folder / "group.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _sync_dir(folder)

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

    def unresolved(self) -> list[tuple[Path, ShardGroup]]:
        """The pending folders holding a record: groups whose submit did not finish. A pending
        folder without one was never sent (the record precedes the transaction)."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob("pending-*/group.json")):
            out.append((path.parent, ShardGroup.model_validate_json(path.read_bytes())))
        return out


def _sync_dir(folder: Path) -> None:
    """Makes a rename or a new file in `folder` survive a power cut (POSIX needs the directory
    itself synced)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- recovery


class Resolution(BaseModel):
    """What `resolve_pending` found for one pending group."""

    model_config = ConfigDict(extra="forbid")

    #: "created": completed from the chain; "abandoned": never created, nothing paid;
    #: "pending": its transaction is not mined yet (or was never sent).
    outcome: str
    folder: Path
    group: ShardGroup
    message: str


def _claimed(store: ShardStore) -> set[int]:
    ids: set[int] = set()
    for number in store.groups():
        try:
            found = store.load(number)
        except (JobNotFound, ValueError):
            continue
        for shard in found.shards:
            ids.add(shard.job_id)
            ids.update(shard.replaced)
    return ids


def _find_run(
    created: Sequence[JobCreated], group: ShardGroup, claimed: set[int]
) -> list[int] | None:
    """The first run of consecutive job ids, none claimed by another group, whose spec hashes
    and units are the group's shards' in order: one createJobs transaction of this batch."""
    assert group.pending is not None
    want = [bytes.fromhex(h) for h in group.pending.spec_hashes]
    units = [s.units for s in group.shards]
    by_id = {c.job_id: c for c in created}
    for first in sorted(by_id):
        ids = list(range(first, first + len(want)))
        run = [by_id.get(i) for i in ids]
        if any(
            c is None or c.spec_hash != h or (u is not None and c.request.units != u)
            for c, h, u in zip(run, want, units, strict=True)
        ):
            continue
        if claimed.isdisjoint(ids):
            return ids
    return None


def _adopted(store: ShardStore, folder: Path, group: ShardGroup, message: str) -> Resolution:
    """Completes `group`'s record from `folder` into its group folder."""
    store.adopt(folder, group)
    return Resolution(
        outcome="created", folder=store.group_folder(group.group), group=group, message=message
    )


def resolve_pending(
    store: ShardStore, market: Market, requester: str, *, chunk: int = 10_000
) -> list[Resolution]:
    """Settles every pending group of `store` from the chain (see the module docstring): a
    created one is completed and renamed to its group folder, a never created one set aside;
    returns what happened to each, oldest record first."""
    out: list[Resolution] = []
    for folder, group in sorted(
        store.unresolved(), key=lambda fg: fg[1].pending.recorded_at if fg[1].pending else 0.0
    ):
        sent = group.pending
        if sent is None:  # completed, then the submit died before the rename
            out.append(
                _adopted(
                    store,
                    folder,
                    group,
                    f"shard group {group.group} recovered (jobs {group.job_ids})",
                )
            )
            continue
        # The nonce is read before the logs: once it is used, the batch's logs (if it was
        # the transaction that used it) are already on the chain the scan reads.
        used = (
            int(market.w3.eth.get_transaction_count(to_checksum_address(requester), "latest"))
            > sent.nonce
        )
        created = market.jobs_created(requester, from_block=sent.after_block, chunk=chunk)
        ids = _find_run(created, group, _claimed(store))
        if ids is not None:
            for shard, job_id in zip(group.shards, ids, strict=True):
                shard.job_id = job_id
            group.group, group.pending = ids[0], None
            out.append(
                _adopted(
                    store,
                    folder,
                    group,
                    f"shard group {group.group} recovered from the chain (jobs "
                    f"{group.job_ids}): its submit stopped after sending the transaction",
                )
            )
        elif used:
            aside = store.abandon(folder)
            out.append(
                Resolution(
                    outcome="abandoned",
                    folder=aside,
                    group=group,
                    message=(
                        f"a sharded submit of {len(group.shards)} {group.kind} shards stopped "
                        f"before its jobs were created: nonce {sent.nonce} of {requester} was "
                        "used by another transaction and no such jobs exist, so nothing was "
                        f"paid; submit it again (its shard inputs are kept in {aside})"
                    ),
                )
            )
        else:
            out.append(
                Resolution(
                    outcome="pending",
                    folder=folder,
                    group=group,
                    message=(
                        f"a sharded submit of {len(group.shards)} {group.kind} shards stopped "
                        f"before recording its jobs, and no transaction with nonce {sent.nonce} "
                        f"of {requester} is mined yet: either it is still waiting in the node's "
                        "pool (wait, then run this again) or it was never sent (nothing was "
                        "paid; the wallet's next transaction settles this, after which this "
                        "record is set aside). Do not submit the same batch again before then"
                    ),
                )
            )
    return out


def resolve_resubmits(
    store: ShardStore, market: Market, group: ShardGroup, *, chunk: int = 10_000
) -> list[str]:
    """Settles the shards of `group` whose resubmission stopped between sending its transaction
    and recording its job, as `resolve_pending` does for a whole group: the job found in the
    requester's JobCreated logs replaces the shard's; none there while the nonce was used by
    another transaction clears the mark (nothing paid); else the mark stays. Saves the group
    when anything changed; returns one message per shard still or just settled."""
    marked = [s for s in group.shards if s.pending is not None]
    if not marked:
        return []
    requester = group.requester
    used_up_to = int(market.w3.eth.get_transaction_count(to_checksum_address(requester), "latest"))
    first = min(s.pending.after_block for s in marked if s.pending is not None)
    created = market.jobs_created(requester, from_block=first, chunk=chunk)
    claimed = _claimed(store) | set(group.job_ids)
    messages = []
    for shard in marked:
        sent = shard.pending
        assert sent is not None
        (want,) = sent.spec_hashes
        found = next(
            (c for c in created if c.job_id not in claimed and c.spec_hash.hex() == want),
            None,
        )
        if found is not None:
            shard.replaced.append(shard.job_id)
            shard.job_id, shard.pending = found.job_id, None
            claimed.add(found.job_id)
            messages.append(
                f"shard {shard.index} of group {group.group}: its resubmission (job "
                f"{found.job_id}) recovered from the chain"
            )
        elif used_up_to > sent.nonce:
            shard.pending = None
            messages.append(
                f"shard {shard.index} of group {group.group}: its resubmission stopped before "
                "the job was created (nothing paid); resubmit it again"
            )
        else:
            messages.append(
                f"shard {shard.index} of group {group.group}: a resubmission stopped before "
                f"recording its job and no transaction with nonce {sent.nonce} of {requester} "
                "is mined yet: wait for it (or, if it was never sent, the wallet's next "
                "transaction settles this), then run this again"
            )
    if any(s.pending is None for s in marked):
        store.save(group)
    return messages
