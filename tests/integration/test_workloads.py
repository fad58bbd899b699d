"""Workloads end to end on one devnet (Anvil, Redis, the relayer, a provider agent and its Celery
worker, the requester SDK and CLI): a torch.export program, and sharded batches merged from
verified shards, one of them refunded and resubmitted, a sharded submit whose process dies around
its transaction, and a real model brought as a user would (Silero's voice activity detector,
shipped in the silero-vad wheel); each result bit-exact with a local run.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner
from web3 import Web3

import provider.runtime.determinism  # noqa: F401  pins the CPU kernels before any local run
from marketplace.api.app import create_app
from marketplace.api.settings import ApiSettings
from marketplace.cli.main import app as cli
from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, funded_account
from marketplace.protocol.client import JobState
from marketplace.protocol.digest import digest
from marketplace.relayer.service import Relayer
from marketplace.relayer.settings import RelayerSettings
from marketplace.requester import JobDraft, Requester, ResultUnavailable
from tests.conftest import reverted
from tests.provider.conftest import PARAMS, PROFILE, RedisServer, World, _Api

pytestmark = pytest.mark.integration

BATCH = torch.export.Dim("batch", min=1, max=4096)
SENTENCES = [f"sentence {i} about {'compute ' * (i % 5)}markets" for i in range(24)]


class Scorer(torch.nn.Module):
    """A row-wise program: each row's outputs depend on that row only, so shards merge exactly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = torch.nn.Conv1d(2, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 8, 3)

    def forward(self, x: torch.Tensor, temperature: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.conv(x)).flatten(1)
        return {"probs": torch.softmax(self.head(h) / temperature, dim=-1), "features": h}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, anvil: Anvil) -> Iterator[World]:
    """One deployment, one registered provider with its agent and a warm worker."""
    base = tmp_path_factory.mktemp("workloads")
    redis_dir = base / "redis"
    redis_dir.mkdir()
    redis_ = RedisServer.start_new(redis_dir)
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
    try:
        with reverted(w3):
            cast = scenarios.setup(w3, funded_account(w3), params=PARAMS, providers=1)
            cast.deployment.write(base / "deployment.json")
            api = _Api(
                create_app(
                    ApiSettings(
                        artifact_root=base / "artifacts", deployment_file=base / "deployment.json"
                    )
                )
            )
            assert cast.matcher.signer is not None and cast.requester.signer is not None
            relayer = Relayer(
                RelayerSettings(
                    rpc_url=anvil.url,
                    deployment_file=base / "deployment.json",
                    private_key="0x" + bytes(cast.matcher.signer.account.key).hex(),
                    db_url=f"sqlite:///{base / 'relayer.sqlite3'}",
                    confirmations=0,
                    require_heartbeats=False,
                )
            )
            queue = "depin-test-" + hashlib.sha256(str(base).encode()).hexdigest()[:8]
            key = cast.requester.signer.account
            world = World(base, w3, cast, api.url, redis_.url, queue, relayer, key, api, redis_)
            try:
                world.start_worker().wait_warm()
                world.agent("alice")
                yield world
            finally:
                for worker in world.workers:
                    worker.stop()
                for agent in world.agents.values():
                    agent.close()
                relayer.close()
                api.stop()
    finally:
        redis_.stop()


@pytest.fixture()
def req(world: World, tmp_path: Path) -> Iterator[Requester]:
    with Requester(
        world.w3,
        world.cast.deployment,
        world.requester_key,
        world.api_url,
        poll_interval=0.05,
        shard_dir=tmp_path / "shards",
    ) as requester:
        yield requester


def settle(world: World, jobs: list[int]) -> None:
    """Drives the devnet until every job of `jobs` that runs is settled (refunded ones stay)."""
    world.drive(
        lambda: all(world.state(j) in (JobState.COMMITTED, JobState.SETTLED) for j in jobs),
        what=f"commits of {jobs}",
        timeout=240,
    )
    world.advance(PARAMS.challenge_window + 1)
    world.drive(
        lambda: all(world.state(j) is JobState.SETTLED for j in jobs), what=f"{jobs} settled"
    )


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("program") / "scorer.pt2"
    example = (torch.randn(2, 2, 8), torch.tensor(1.5))
    exported = torch.export.export(
        Scorer().eval(), example, dynamic_shapes={"x": {0: BATCH}, "temperature": None}
    )
    torch.export.save(exported, str(path))
    return path


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("batch") / "x.safetensors"
    x = torch.randn(10, 2, 8, generator=torch.Generator().manual_seed(9))
    safetensors.torch.save_file({"x": x, "temperature": torch.tensor(1.5)}, str(path))
    return path


def local_export(program: Path, batch: Path) -> dict[str, np.ndarray[Any, Any]]:
    from provider.runtime.export import export

    return export(program.read_bytes(), batch.read_bytes(), torch.device("cpu"))


def test_an_export_job_runs_on_a_provider_bit_exact_with_a_local_run(
    world: World, req: Requester, program: Path, batch: Path
) -> None:
    job = req.submit("export", model=program, inputs=[batch], max_price_per_unit=scenarios.PRICE)
    settle(world, [job])
    result = req.result(job)
    local = local_export(program, batch)
    assert result.ok and sorted(result.outputs) == ["features", "probs"]
    for name, array in local.items():
        assert np.array_equal(result.outputs[name], array), name
    assert digest(PROFILE, dict(result.outputs)) == digest(PROFILE, local)


def test_a_sharded_export_merges_and_a_refunded_shard_is_resubmitted(
    world: World, req: Requester, program: Path, batch: Path, tmp_path: Path
) -> None:
    draft = JobDraft(
        "export", scenarios.PRICE, inputs=(batch,), model=program, units=9, exec_window=600
    )
    plan = req.plan_shards(draft, 3)
    assert plan.units == [3, 3, 3]
    assert plan.escrow == sum(req.market.escrow_for(j.request) for j in plan.jobs)
    tokens = req.market.balance_of(req.address)
    group = req.submit_shards(plan)
    assert req.market.balance_of(req.address) == tokens - plan.escrow  # one batch, one pull
    assert group.job_ids == [group.group, group.group + 1, group.group + 2]
    assert [s.rows for s in group.shards] == [4, 3, 3]

    refunded = group.job_ids[1]
    req.cancel(refunded)  # refunded before anyone takes it
    settle(world, [group.job_ids[0], group.job_ids[2]])
    assert world.state(refunded) is JobState.EXPIRED
    with pytest.raises(ResultUnavailable, match=rf"resubmit-shard {group.group} 1"):
        req.shard_result(group.group)

    again = req.resubmit_shard(group.group, 1)
    kept = req.shard_group(group.group)
    assert kept.job_ids == [group.job_ids[0], again, group.job_ids[2]]
    assert kept.shards[1].replaced == [refunded]
    settle(world, [again])

    merged = req.shard_result(group.group, out=tmp_path / "merged.safetensors")
    assert merged.job_ids == (group.job_ids[0], again, group.job_ids[2])
    local = local_export(program, batch)
    assert sorted(merged.outputs) == sorted(local) and merged.unmerged == ()
    for name, array in local.items():
        assert np.array_equal(merged.outputs[name], array), name
    written = safetensors.torch.load_file(str(merged.path))
    assert torch.equal(written["probs"], torch.from_numpy(local["probs"]))


def test_sharded_embed_through_the_cli_is_bit_exact_with_one_local_run(
    world: World, tmp_path: Path
) -> None:
    from provider.runtime.embed import embed

    env = {
        "DEPIN_REQUESTER_RPC_URL": str(world.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
        "DEPIN_REQUESTER_DEPLOYMENT_FILE": str(world.base / "deployment.json"),
        "DEPIN_REQUESTER_RELAYER_URL": world.api_url,
        "DEPIN_REQUESTER_PRIVATE_KEY": "0x" + bytes(world.requester_key.key).hex(),
        "DEPIN_REQUESTER_POLL_INTERVAL": "0.05",
        "DEPIN_REQUESTER_SHARD_DIR": str(tmp_path / "shards"),
    }
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps(SENTENCES))
    runner = CliRunner()
    submitted = runner.invoke(
        cli,
        [
            "job",
            "submit",
            "embed",
            str(corpus),
            "--shard",
            "2",
            "--param",
            "batch_size=1",
            "--json",
        ],
        env=env,
    )
    assert submitted.exit_code == 0, (submitted.stdout, submitted.stderr)
    data = json.loads(submitted.stdout)
    jobs = data["job_ids"]
    assert len(jobs) == 2 and data["group"] == jobs[0] and data["units"] == [12, 12]
    settle(world, jobs)
    out = tmp_path / "embeddings.safetensors"
    merged = runner.invoke(
        cli, ["job", "result", str(data["group"]), "--group", "--out", str(out)], env=env
    )
    assert merged.exit_code == 0, (merged.stdout, merged.stderr)
    assert "embeddings: float32 (24, 384)" in merged.stdout
    got = safetensors.torch.load(out.read_bytes())["embeddings"].numpy()
    # One sentence per forward pass: no padding, so no bit depends on which shard a sentence
    # ran in (with batches, a sentence is padded to its batch's longest: see docs/workloads.md).
    assert np.array_equal(got, embed(SENTENCES, batch_size=1)["embeddings"])


def test_a_sharded_submit_without_a_permit_approves_before_recording_its_transaction(
    world: World, req: Requester, batch: Path, program: Path
) -> None:
    market = world.cast.deployment.market
    req.market.approve(market, 0)
    draft = JobDraft("export", scenarios.PRICE, inputs=(batch,), model=program)
    group = req.submit_shards(req.plan_shards(draft, 2), use_permit=False)
    assert req.market.escrow_allowance(req.address) == 2**256 - 1  # approved, then created
    assert req.shard_store.load(group.group) == group and group.pending is None
    assert req.recover_shards() == []
    for job_id in group.job_ids:
        req.cancel(job_id)


# A sharded submit in its own process, killed (os._exit: no cleanup, no finally) at `crash`:
# "record" right after the pending record is written, before the transaction is sent; "send"
# right after the transaction is sent, before its receipt is read.
_DYING_SUBMIT = """
import json, os, sys
from pathlib import Path
from eth_account import Account
from marketplace.protocol import chain
from marketplace.requester import JobDraft, Requester
from marketplace.requester.shard import ShardStore

args = json.loads(sys.argv[1])
if args["crash"] == "record":
    record = ShardStore.record_pending
    def record_then_die(self, pending, group):
        record(self, pending, group)
        os._exit(3)
    ShardStore.record_pending = record_then_die
else:
    broadcast = chain.Signer._broadcast
    def send_then_die(self, tx):
        sent = broadcast(self, tx)
        if tx["to"].lower() == args["market"].lower():  # createJobs, not an approve
            os._exit(3)
        return sent
    chain.Signer._broadcast = send_then_die
req = Requester.connect(
    rpc_url=args["rpc"], deployment=Path(args["deployment"]),
    account=Account.from_key(args["key"]), relayer_url=args["relayer"], ws_url="off",
    shard_dir=Path(args["shards"]),
)
if args["resubmit"] is not None:
    print(0, flush=True)
    req.resubmit_shard(*args["resubmit"])
    sys.exit(0)
draft = JobDraft("export", args["price"], inputs=(Path(args["batch"]),),
                 model=Path(args["program"]), exec_window=600)
plan = req.plan_shards(draft, args["shards_n"])
print(plan.escrow, flush=True)
req.submit_shards(plan)
sys.exit(0)
"""


def _submit_and_die(
    world: World,
    req: Requester,
    program: Path,
    batch: Path,
    shards: int,
    crash: str,
    resubmit: tuple[int, int] | None = None,
) -> int:
    """Runs `_DYING_SUBMIT` (`resubmit`: resubmits that group's shard instead), checks it died
    where told; returns the escrow its plan quoted."""
    args = {
        "rpc": str(world.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
        "deployment": str(world.base / "deployment.json"),
        "key": "0x" + bytes(world.requester_key.key).hex(),
        "relayer": world.api_url,
        "shards": str(req.shard_store.folder.parent),
        "price": scenarios.PRICE,
        "batch": str(batch),
        "program": str(program),
        "shards_n": shards,
        "crash": crash,
        "resubmit": resubmit,
        "market": world.cast.deployment.market,
    }
    done = subprocess.run(
        [sys.executable, "-c", _DYING_SUBMIT, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, (done.stdout, done.stderr)
    return int(done.stdout.split()[0])


def test_a_sharded_submit_that_dies_around_its_transaction_loses_nothing(
    world: World, req: Requester, program: Path, batch: Path
) -> None:
    tokens = req.market.balance_of(req.address)

    # Died after writing its record, before sending: nothing paid, and the record says so.
    _submit_and_die(world, req, program, batch, 2, "record")
    assert req.market.balance_of(req.address) == tokens
    (waiting,) = req.recover_shards()
    assert waiting.outcome == "pending" and waiting.group.pending is not None
    assert "nonce" in waiting.message and "the wallet's next transaction" in waiting.message
    assert req.shard_store.groups() == []

    # Died after sending, before reading the receipt: the jobs exist and are paid for, the
    # record is still pending. That transaction used the nonce the first record waited for.
    escrow = _submit_and_die(world, req, program, batch, 3, "send")
    assert req.market.balance_of(req.address) == tokens - escrow
    assert req.shard_store.groups() == []
    abandoned, created = req.recover_shards()
    assert abandoned.outcome == "abandoned" and "nothing was paid" in abandoned.message
    assert abandoned.folder.name.startswith("abandoned-") and abandoned.folder.is_dir()
    assert created.outcome == "created" and created.group.pending is None
    group = created.group
    assert group.job_ids == [group.group, group.group + 1, group.group + 2]
    assert req.shard_store.groups() == [group.group]
    assert req.recover_shards() == []  # settled for good
    mine = {c.job_id: c for c in req.market.jobs_created(req.address, from_block=0)}
    assert sum(mine[j].escrow for j in group.job_ids) == escrow

    # A shard refunded, then its resubmission dies after sending: the next open of the group
    # finds the new job on the chain and records it.
    refunded = group.job_ids[1]
    req.cancel(refunded)
    before = req.market.balance_of(req.address)
    _submit_and_die(world, req, program, batch, 3, "send", resubmit=(group.group, 1))
    assert req.market.balance_of(req.address) < before  # the new job is paid for
    assert req.shard_store.load(group.group).shards[1].pending is not None
    kept = req.shard_group(group.group)
    again = kept.job_ids[1]
    assert again > refunded and kept.shards[1].replaced == [refunded]
    assert kept.shards[1].pending is None and req.shard_store.load(group.group) == kept
    assert req.market.job(again).requester == req.address

    settle(world, kept.job_ids)
    merged = req.shard_result(group.group)
    local = local_export(program, batch)
    assert merged.job_ids == tuple(kept.job_ids) and merged.unmerged == ()
    for name, array in local.items():
        assert np.array_equal(merged.outputs[name], array), name


class SpeechPerWindow(torch.nn.Module):
    """Silero VAD over whole clips: the shipped module's `audio_forward` runs each clip's 512-sample
    windows in order, carrying its state, and gives the speech probability of every window.
    (Returns a bare tensor, the job's `output`: TorchScript cannot read this file's postponed
    annotations of a dict.)"""

    def __init__(self, vad: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.vad = vad

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.vad.audio_forward(audio, 16000)  # type: ignore[no-any-return]


def _shipped_vad() -> bytes:
    """The VAD module file as the silero-vad wheel ships it, checked against the wheel's RECORD
    (a file that differs from what was installed is refused)."""
    (entry,) = [
        f
        for f in importlib.metadata.files("silero-vad") or []
        if f.name == "silero_vad.jit" and f.hash is not None
    ]
    assert entry.hash is not None and entry.hash.mode == "sha256"
    data = entry.read_binary()
    assert base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode() == (
        entry.hash.value
    )
    return data


@pytest.fixture(scope="module")
def vad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vad") / "speech_per_window.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        shipped = torch.jit.load(io.BytesIO(_shipped_vad()))  # type: ignore[no-untyped-call]
        scripted = torch.jit.script(SpeechPerWindow(shipped).eval())
        torch.jit.save(scripted, str(path))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 2-second 16 kHz clips: a voiced tone from 0.7 s on, noise, and a wavering tone."""
    path = tmp_path_factory.mktemp("clips") / "clips.safetensors"
    t = torch.arange(32_000) / 16_000
    noise = torch.randn(32_000, generator=torch.Generator().manual_seed(3))
    audio = torch.stack(
        [
            0.3 * torch.sin(2 * torch.pi * 220 * t) * (t > 0.7),
            0.05 * noise,
            0.5 * torch.sin(2 * torch.pi * 440 * t) * torch.sin(2 * torch.pi * 3 * t),
        ]
    )
    safetensors.torch.save_file({"audio": audio}, str(path))
    return path


def test_silero_vad_from_its_wheel_runs_on_a_provider_bit_exact_with_a_local_run(
    world: World, req: Requester, vad: Path, clips: Path
) -> None:
    from provider.runtime.torchscript import torchscript

    prepared = req.prepare(JobDraft("torchscript", scenarios.PRICE, inputs=(clips,), model=vad))
    assert prepared.spec.model == hashlib.sha256(vad.read_bytes()).hexdigest()
    job = req.submit("torchscript", model=vad, inputs=[clips], max_price_per_unit=scenarios.PRICE)
    settle(world, [job])
    result = req.result(job)
    local = torchscript(vad.read_bytes(), clips.read_bytes(), torch.device("cpu"))
    assert result.ok and sorted(result.outputs) == ["output"]
    speech = result.outputs["output"]
    assert speech.dtype == np.float32 and speech.shape == (3, 63)  # 32,000 / 512 windows, padded
    assert np.array_equal(speech, local["output"])
    assert digest(PROFILE, dict(result.outputs)) == digest(PROFILE, local)
    # Tones and noise are not speech; the first clip's peak is its onset at 0.7 s (window 21-22).
    assert speech.max() < 0.5 and int(speech[0].argmax()) in (21, 22)
