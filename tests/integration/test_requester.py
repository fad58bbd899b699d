"""The requester SDK and CLI against a real Anvil deployment and a real relayer API.

Anvil runs the contracts (`scenarios.setup` deploys and stakes providers), the API
(`create_app` with the chain read routes over a store a Listener fills) is served by uvicorn on
a loopback socket, and the provider side is played by hand: assign with the matcher key, build a
result payload of real arrays, encrypt it to the requester, upload it, commit its digest with
the provider's key and post a signed notice. The requester must get back exactly the committed
result, and refuse anything that does not match a commitment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from safetensors.numpy import load_file
from typer.testing import CliRunner
from web3 import Web3
from web3.exceptions import Web3RPCError

from marketplace.api.app import create_app
from marketplace.api.chain_routes import chain_router
from marketplace.api.settings import ApiSettings
from marketplace.cli.main import app as cli
from marketplace.devnet import scenarios
from marketplace.devnet.anvil import Anvil, advance, free_port, funded_account
from marketplace.index.listener import Listener
from marketplace.index.store import Store
from marketplace.protocol.artifact_client import ArtifactClient, RelayerUnreachable
from marketplace.protocol.client import JobState
from marketplace.protocol.errors import ChainError
from marketplace.protocol.results import (
    ResultPayload,
    encrypt_result,
    public_key_hex,
    sign_result_notice,
)
from marketplace.protocol.spec import JobSpec, SpecError
from marketplace.protocol.tokens import format_tokens
from marketplace.requester import (
    DEFAULT_PROFILE,
    InputError,
    InsufficientFunds,
    JobDraft,
    NotRequester,
    Requester,
    ResultRejected,
    ResultUnavailable,
    WaitTimeout,
    WrongState,
    encode_sentences,
)
from tests.conftest import reverted, serve

pytestmark = pytest.mark.integration

PRICE = scenarios.PRICE
MATMUL = {"n": 8, "seed": 1}


@dataclass
class World:
    anvil_url: str
    api_url: str
    w3: Web3
    cast: scenarios.Cast
    owner: LocalAccount
    deployment_file: Path
    listener: Listener

    @property
    def requester_account(self) -> LocalAccount:
        signer = self.cast.requester.signer
        assert signer is not None
        return signer.account

    def requester(self, account: LocalAccount | None = None, **kw: Any) -> Requester:
        return Requester(
            self.w3,
            self.cast.deployment,
            account or self.requester_account,
            kw.pop("relayer_url", self.api_url),
            poll_interval=0.05,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, anvil: Anvil) -> Iterator[World]:
    """One deployment the module's tests build on in turn (later ones step over earlier ones'
    jobs), and the store its listener filled: both live as long as the module's snapshot."""
    base = tmp_path_factory.mktemp("requester")
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 10}))
    with reverted(w3):
        owner = funded_account(w3)
        cast = scenarios.setup(w3, owner, providers=3)
        scenarios.set_audit_rate(cast, 0)  # the floor rate: a test that settles draws clear
        deployment_file = base / "deployment.json"
        cast.deployment.write(deployment_file)
        store = Store(f"sqlite:///{base / 'relayer.sqlite3'}")
        listener = Listener(w3, cast.deployment, store, confirmations=0)
        settings = ApiSettings(artifact_root=base / "artifacts", deployment_file=deployment_file)
        url, server, thread = serve(create_app(settings, routers=[chain_router(store)]))
        try:
            yield World(anvil.url, url, w3, cast, owner, deployment_file, listener)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            store.close()


@pytest.fixture()
def req(world: World) -> Iterator[Requester]:
    with world.requester() as r:
        yield r


def deliver(
    world: World,
    job_id: int,
    provider: str,
    payload: ResultPayload,
    *,
    commit: ResultPayload | None = None,
    public_key: str | None = None,
    timestamp: int | None = None,
) -> str:
    """Plays `provider`: uploads `payload` encrypted to the requester, commits the digest of
    `commit` (default: the payload's own) and posts a signed notice. Returns the artifact."""
    client = world.cast.providers[provider]
    key = public_key or public_key_hex(world.requester_account)
    with ArtifactClient(world.api_url) as artifacts:
        artifact = artifacts.put(encrypt_result(key, payload))
    if client.state(job_id) is JobState.ASSIGNED:
        client.commit(job_id, (commit or payload).digest())
    signer = client.signer
    assert signer is not None
    notice = sign_result_notice(
        signer.account,
        chain_id=world.cast.deployment.chain_id,
        market=world.cast.deployment.market,
        job_id=job_id,
        artifact=artifact,
        timestamp=timestamp or int(time.time()),
    )
    response = httpx.post(f"{world.api_url}/results", content=notice.model_dump_json())
    assert response.status_code == 200, response.text
    return artifact


def outputs(seed: int) -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return {"c": rng.standard_normal((8, 8)).astype(np.float32)}


def payload_for(job_id: int, seed: int = 0) -> ResultPayload:
    return ResultPayload(job_id, DEFAULT_PROFILE, outputs(seed))


def matmul_job(req: Requester, world: World, *executors: str, replicas: int = 1) -> int:
    job_id = req.submit("matmul", parameters=MATMUL, max_price_per_unit=PRICE, replicas=replicas)
    if executors:
        world.cast.matcher.assign(job_id, [world.cast.providers[p].address for p in executors])
    return job_id


# ---------------------------------------------------------------------- submit


def test_submit_escrows_with_a_permit_and_stores_the_spec(world: World, req: Requester) -> None:
    m = world.cast.owner
    me, market = req.address, world.cast.deployment.market
    before, held = m.balance_of(me), m.balance_of(market)
    nonce = int(m.token.functions.nonces(me).call())
    job_id = req.submit(
        "matmul", parameters={"n": 1001, "seed": 5}, max_price_per_unit=PRICE, exec_window=120
    )
    job = m.job(job_id)
    assert job.state is JobState.OPEN and job.requester == me
    assert (job.units, job.max_price_per_unit, job.exec_window) == (3, PRICE, 120)
    assert before - m.balance_of(me) == job.escrow == m.balance_of(market) - held > 0
    # Paid through createJobsWithPermit: the permit was used, no standing allowance is left.
    assert int(m.token.functions.nonces(me).call()) == nonce + 1
    assert int(m.token.functions.allowance(me, market).call()) == 0

    created = m.market.events.JobCreated().get_logs(
        argument_filters={"jobId": job_id}, from_block=world.cast.deployment.block
    )
    spec_hash = bytes(created[0]["args"]["specHash"])
    with ArtifactClient(world.api_url) as artifacts:
        spec = JobSpec.from_json(artifacts.get(spec_hash.hex()), canonical=True)
    assert spec.spec_hash() == spec_hash
    assert (spec.kind, spec.model, spec.inputs, spec.units) == ("matmul", "", (), 3)
    assert spec.parameters == {"n": 1001, "seed": 5}
    assert spec.requester_public_key == public_key_hex(req.account)


def test_submit_embed_uploads_each_input(world: World, req: Requester, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("the first sentence\n\nthe second one\n")
    (tmp_path / "b.json").write_text('["a third, ünïcode ✓"]')
    files = (tmp_path / "a.txt", tmp_path / "b.json")
    job_id = req.submit("embed", inputs=files, max_price_per_unit=PRICE)
    spec = req.prepare(JobDraft("embed", PRICE, inputs=files)).spec  # deterministic rebuild
    assert world.cast.owner.job(job_id).units == spec.units == 3
    with ArtifactClient(world.api_url) as artifacts:
        assert JobSpec.from_json(artifacts.get(spec.spec_hash().hex())) == spec
        stored = [artifacts.get(sha) for sha in spec.inputs]
    assert stored == [
        encode_sentences(["the first sentence", "the second one"]),
        encode_sentences(["a third, ünïcode ✓"]),
    ]


def test_submit_many_is_one_transaction(world: World, req: Requester) -> None:
    m = world.cast.owner
    drafts = [JobDraft("matmul", PRICE, parameters={"n": 8, "seed": s}) for s in range(3)]
    count, nonce = m.job_count(), world.w3.eth.get_transaction_count(req.address)
    ids = req.submit_many(drafts)
    assert ids == list(range(count + 1, count + 4))
    assert world.w3.eth.get_transaction_count(req.address) == nonce + 1


# ---------------------------------------------------------------------- errors before paying


def test_every_refused_submission_moves_nothing(world: World, tmp_path: Path) -> None:
    m, w3 = world.cast.owner, world.w3
    acct = world.requester_account
    poor = funded_account(w3)  # ETH for gas, no tokens
    no_gas: LocalAccount = Account.create()
    m.mint(no_gas.address, 10**20)

    def books() -> tuple[int, ...]:
        return (
            m.job_count(),
            m.balance_of(acct.address),
            m.balance_of(world.cast.deployment.market),
            w3.eth.get_transaction_count(acct.address),
            w3.eth.get_transaction_count(poor.address),
            w3.eth.get_transaction_count(no_gas.address),
        )

    before = books()
    with world.requester() as req:
        with pytest.raises(InputError, match=r"no input file at .*missing\.txt; check the path"):
            req.submit("embed", inputs=[tmp_path / "missing.txt"], max_price_per_unit=PRICE)
        with pytest.raises(InputError, match="unknown kind 'train'; use one of"):
            req.submit("train", parameters=MATMUL, max_price_per_unit=PRICE)
        with pytest.raises(SpecError, match=r"matmul needs parameters\.seed"):
            req.submit("matmul", parameters={"n": 8}, max_price_per_unit=PRICE)
        with pytest.raises(InsufficientFunds, match=r"escrow is .* fund the wallet"):
            req.submit("matmul", parameters=MATMUL, max_price_per_unit=10**24)
        window = m.params().max_exec_window + 1
        with pytest.raises(InputError, match="exceeds the market's maximum"):
            req.submit("matmul", exec_window=window, parameters=MATMUL, max_price_per_unit=PRICE)
        with pytest.raises(InputError, match="not in the relayer's store"):
            req.submit(
                "torchscript",
                model="ab" * 32,
                inputs=[_safetensors(tmp_path)],
                parameters=MATMUL,
                max_price_per_unit=PRICE,
            )
    with world.requester(poor) as req, pytest.raises(InsufficientFunds, match="holds 0 tokens"):
        req.submit("matmul", parameters=MATMUL, max_price_per_unit=PRICE)
    with world.requester(no_gas) as req, pytest.raises(InsufficientFunds, match="no ETH"):
        req.submit("matmul", parameters=MATMUL, max_price_per_unit=PRICE)
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        world.requester(relayer_url=dead) as req,
        pytest.raises(RelayerUnreachable, match="is unreachable"),
    ):
        req.submit("matmul", parameters=MATMUL, max_price_per_unit=PRICE)
    wrong = replace(world.cast.deployment, chain_id=1)
    with pytest.raises(ChainError, match="serves chain 31337, the deployment is on chain 1"):
        Requester.connect(
            rpc_url=world.anvil_url, deployment=wrong, account=acct, relayer_url=world.api_url
        )
    with pytest.raises(ChainError, match="cannot reach the RPC"):
        Requester.connect(
            rpc_url=dead, deployment=world.cast.deployment, account=acct, relayer_url=world.api_url
        )
    assert books() == before


def _safetensors(tmp_path: Path) -> Path:
    from safetensors.numpy import save_file

    path = tmp_path / "x.safetensors"
    save_file({"x": np.ones(3, dtype=np.float32)}, path)
    return path


# ---------------------------------------------------------------------- results


def test_result_is_decrypted_and_verified(world: World, req: Requester, tmp_path: Path) -> None:
    job_id = matmul_job(req, world, "alice")
    with pytest.raises(ResultUnavailable, match="no result committed yet"):
        req.result(job_id)
    payload = payload_for(job_id, seed=1)
    deliver(world, job_id, "alice", payload)
    seen: list[JobState] = []
    status = req.wait(job_id, timeout=20, on_state=seen.append)
    assert status.result_available and status.state is JobState.COMMITTED
    assert seen == [JobState.COMMITTED]
    res = req.result(job_id, out=tmp_path / "r.safetensors")
    assert res.ok and res.provider == world.cast.providers["alice"].address
    assert res.digest == payload.digest() and res.rejected == ()
    np.testing.assert_array_equal(res.outputs["c"], payload.outputs["c"])
    assert res.path == tmp_path / "r.safetensors"
    np.testing.assert_array_equal(load_file(res.path)["c"], payload.outputs["c"])
    npy = req.result(job_id, out=tmp_path / "c.npy").path
    assert npy is not None
    np.testing.assert_array_equal(np.load(npy), payload.outputs["c"])

    world.listener.poll_once()
    status = req.status(job_id)
    assert [(p.provider, p.executor, p.committed) for p in status.participants] == [
        (res.provider, True, True)
    ]
    assert status.results == (res.provider,)
    assert status.history is not None
    assert [h["event"] for h in status.history][:3] == [
        "JobCreated",
        "ProviderAssigned",
        "ResultCommitted",
    ]


def test_tampered_and_foreign_results_are_rejected(world: World, req: Requester) -> None:
    job_id = matmul_job(req, world, "bob")
    good, forged = payload_for(job_id, seed=2), payload_for(job_id, seed=3)
    now = int(time.time())
    # bob commits the good digest but uploads other outputs; carol is no participant.
    deliver(world, job_id, "bob", forged, commit=good, timestamp=now)
    deliver(world, job_id, "carol", good, timestamp=now)
    with pytest.raises(ResultRejected) as info:
        req.result(job_id)
    message = str(info.value)
    bob, carol = world.cast.providers["bob"].address, world.cast.providers["carol"].address
    assert f"is not what {bob} committed for job {job_id}" in message
    assert f"{carol}: not a participant" in message

    # Encrypted to another key: does not decrypt with the requester's.
    other = public_key_hex(Account.create())
    deliver(world, job_id, "bob", good, public_key=other, timestamp=now + 1)
    with pytest.raises(ResultRejected, match="does not decrypt"):
        req.result(job_id)

    # A result for another job with the same outputs does not pass for this one.
    deliver(world, job_id, "bob", payload_for(job_id + 1000, seed=2), timestamp=now + 2)
    with pytest.raises(ResultRejected, match=f"is for job {job_id + 1000}, not job {job_id}"):
        req.result(job_id)

    deliver(world, job_id, "bob", good, timestamp=now + 3)  # the honest re-upload
    res = req.result(job_id)
    assert res.provider == bob and res.digest == good.digest()
    assert res.rejected == ()  # executors are tried first: carol's notice was not needed


def test_each_executor_is_tried_until_one_verifies(world: World, req: Requester) -> None:
    job_id = matmul_job(req, world, "bob", "alice", "carol", replicas=3)
    good = payload_for(job_id, seed=4)
    deliver(world, job_id, "bob", payload_for(job_id, seed=5), commit=good)
    deliver(world, job_id, "alice", good)
    deliver(world, job_id, "carol", good)
    assert world.cast.owner.state(job_id) is JobState.REVEALING
    res = req.result(job_id)
    alice, bob = world.cast.providers["alice"].address, world.cast.providers["bob"].address
    assert res.provider == alice and res.digest == good.digest()
    assert [p for p, _ in res.rejected] == [bob]


def test_a_deterministic_failure_is_a_result(world: World, req: Requester, tmp_path: Path) -> None:
    job_id = matmul_job(req, world, "carol")
    failed = ResultPayload.failed(job_id, DEFAULT_PROFILE, "input-invalid", "n is too large")
    deliver(world, job_id, "carol", failed)
    res = req.result(job_id, out=tmp_path / "never.safetensors")
    assert not res.ok and res.failure == "input-invalid" and res.message == "n is too large"
    assert res.path is None and not (tmp_path / "never.safetensors").exists()


def test_a_settled_failure_shows_as_failed_everywhere(
    world: World, env: dict[str, str], req: Requester
) -> None:
    # Settled without a reveal: the executor's commitment is to the failure's digest.
    single = matmul_job(req, world, "carol")
    deliver(
        world, single, "carol", ResultPayload.failed(single, DEFAULT_PROFILE, "spec-invalid", "")
    )
    # Settled with a verdict: three replicas revealed the same failure digest.
    trio = matmul_job(req, world, "alice", "bob", "carol", replicas=3)
    for name in ("alice", "bob", "carol"):
        deliver(world, trio, name, ResultPayload.failed(trio, DEFAULT_PROFILE, "input-invalid", ""))
    # A job that ran, for contrast.
    fine = matmul_job(req, world, "alice")
    deliver(world, fine, "alice", payload_for(fine, seed=3))
    for name in ("alice", "bob", "carol"):
        world.cast.providers[name].reveal(
            trio, ResultPayload.failed(trio, DEFAULT_PROFILE, "input-invalid", "").digest()
        )
    scenarios.draw_clear(world.cast.keeper, single)
    scenarios.draw_clear(world.cast.keeper, fine)
    advance(world.w3, world.cast.owner.params().challenge_window + 1)
    for job_id in (single, trio, fine):
        world.cast.keeper.finalize(job_id)
        assert world.cast.owner.state(job_id) is JobState.SETTLED

    assert (req.status(single).failure, req.status(trio).failure) == (
        "spec-invalid",
        "input-invalid",
    )
    assert req.status(fine).failure is None
    cancelled = matmul_job(req, world)
    req.cancel(cancelled)
    jobs = {j.job_id: j for j in req.list_jobs(limit=500, source="chain")}
    assert (jobs[single].failure, jobs[trio].failure, jobs[fine].failure) == (
        "spec-invalid",
        "input-invalid",
        None,
    )
    assert {jobs[i].kind for i in (single, trio, fine, cancelled)} == {"matmul"}
    assert jobs[cancelled].cost == 0  # the whole escrow came back
    paid = world.cast.owner.job(fine)
    cost = jobs[fine].cost
    assert cost is not None and 0 < cost <= jobs[fine].escrow
    # cost = what left the wallet for it, less what came back: the executor's pay and the
    # protocol's premium at the clearing price, never the unused max price.
    assert cost >= paid.units * paid.clearing_price

    status = run(env, "job", "status", str(single), "--json")
    assert json.loads(status.stdout)["failure"] == "spec-invalid"
    text = run(env, "job", "status", str(trio)).stdout
    assert f"job {trio}: settled (final: FAILED (input-invalid): the job could not run" in text
    waited = run(env, "job", "wait", str(single), "--timeout", "5", code=1)
    assert "FAILED (spec-invalid)" in waited.stdout
    table = run(env, "job", "list", "--limit", "500", "--source", "chain").stdout.splitlines()
    row = {int(line.split()[0]): line for line in table[1:-1]}
    assert "FAILED: spec-invalid" in row[single] and "FAILED: input-invalid" in row[trio]
    assert row[fine].split()[1:5] == ["matmul", "settled", "yes", "ok"]
    assert row[cancelled].split()[1:6] == ["matmul", "expired", "yes", "none", "(refunded)"]
    assert table[-1].startswith("amounts in tokens")
    run(env, "job", "wait", str(fine), "--timeout", "5")  # a job that ran exits 0


def test_only_the_requester_reads_or_acts(world: World, req: Requester) -> None:
    job_id = matmul_job(req, world)
    stranger = funded_account(world.w3)
    with world.requester(stranger) as other:
        with pytest.raises(NotRequester, match="belongs to"):
            other.result(job_id)
        with pytest.raises(NotRequester, match="only its requester may cancel"):
            other.cancel(job_id)
    assert world.cast.owner.state(job_id) is JobState.OPEN


# ---------------------------------------------------------------------- cancel, challenge, list


def test_cancel_refunds_and_withdraw(world: World, req: Requester) -> None:
    m = world.cast.owner
    before = m.balance_of(req.address)
    job_id = matmul_job(req, world)
    escrow = m.job(job_id).escrow
    credits = m.credits(req.address)
    req.cancel(job_id)
    assert m.state(job_id) is JobState.EXPIRED
    assert m.credits(req.address) == credits + escrow
    with pytest.raises(WrongState, match="only an open"):
        req.cancel(job_id)
    assert req.withdraw() == credits + escrow
    assert m.balance_of(req.address) == before + credits


def test_challenge_posts_the_bond(world: World, req: Requester) -> None:
    m = world.cast.owner
    job_id = matmul_job(req, world, "alice")
    with pytest.raises(WrongState, match="only a committed job"):
        req.challenge(job_id)
    deliver(world, job_id, "alice", payload_for(job_id))
    before, bonds = m.balance_of(req.address), m.total_bonds()
    req.challenge(job_id)
    job = m.job(job_id)
    bond = m.params().verifiers * job.units * job.clearing_price
    assert bond == m.challenge_bond(job_id) > 0
    assert m.state(job_id) is JobState.AUDITING
    status = req.status(job_id)
    assert status.challenged and [r.round for r in status.rounds] == [1]
    assert status.rounds[0].seats == m.params().verifiers and not status.rounds[0].staffed
    assert before - m.balance_of(req.address) == bond == m.total_bonds() - bonds


def test_wait_sees_a_notice_that_follows_the_commit_without_waiting_for_a_block(
    world: World, req: Requester
) -> None:
    job_id = matmul_job(req, world, "alice")
    payload = payload_for(job_id, seed=4)
    world.cast.providers["alice"].commit(job_id, payload.digest())
    # The notice comes after the commit and no block follows it: the wait must not sleep
    # through its (here long) poll interval to see it.
    late = threading.Timer(0.5, deliver, (world, job_id, "alice", payload))
    late.start()
    started = time.monotonic()
    try:
        status = req.wait(job_id, timeout=120, poll_interval=60)
    finally:
        late.join()
    assert status.result_available
    assert time.monotonic() - started < 30


def test_wait_times_out_with_the_state(world: World, req: Requester) -> None:
    job_id = matmul_job(req, world)
    with pytest.raises(WaitTimeout, match=f"job {job_id} is still open after"):
        req.wait(job_id, timeout=0.2)


def test_list_from_the_relayer_equals_the_chain_logs(world: World, req: Requester) -> None:
    world.listener.poll_once()
    from_chain = req.list_jobs(source="chain", limit=500)
    from_relayer = req.list_jobs(source="relayer", limit=500)
    assert from_chain == from_relayer and len(from_chain) >= 3
    assert [j.job_id for j in from_chain] == sorted((j.job_id for j in from_chain), reverse=True)
    count = world.cast.owner.job_count()
    assert {j.job_id for j in from_chain} <= set(range(1, count + 1))
    open_jobs = req.list_jobs(state=JobState.OPEN, source="chain")
    assert open_jobs and all(world.cast.owner.state(j.job_id) is JobState.OPEN for j in open_jobs)
    with world.requester(funded_account(world.w3)) as other:
        assert other.list_jobs() == []


# ---------------------------------------------------------------------- CLI


@pytest.fixture()
def env(world: World) -> dict[str, str]:
    return {
        "DEPIN_REQUESTER_RPC_URL": world.anvil_url,
        "DEPIN_REQUESTER_DEPLOYMENT_FILE": str(world.deployment_file),
        "DEPIN_REQUESTER_RELAYER_URL": world.api_url,
        "DEPIN_REQUESTER_PRIVATE_KEY": "0x" + bytes(world.requester_account.key).hex(),
        "DEPIN_REQUESTER_POLL_INTERVAL": "0.05",
    }


def run(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def test_cli_submit_status_result(world: World, env: dict[str, str], tmp_path: Path) -> None:
    out = run(env, "job", "submit", "matmul", "--param", "n=8", "--param", "seed=9", "--json")
    data = json.loads(out.stdout)
    job_id = data["job_id"]
    assert data["status"]["state"] == "open" and data["status"]["units"] == 1
    assert data["status"]["max_price_per_unit"] == str(10**15)  # the default, 0.001 tokens
    status = json.loads(run(env, "job", "status", str(job_id), "--json").stdout)
    assert status["job_id"] == job_id and status["requester"] == world.requester_account.address
    # The keys, in the order --json has always printed them (each value's form is checked in
    # tests/unit/test_requester_wire.py).
    assert list(status) == [
        "job_id", "state", "terminal", "result_available", "requester", "deadline", "replicas",
        "units", "max_price_per_unit", "clearing_price", "escrow", "profile", "participants",
        "rounds", "verifiers", "challenged", "digest", "results", "history", "waiting", "failure",
    ]  # fmt: skip
    text = run(env, "job", "status", str(job_id)).stdout
    assert "max price 0.001 tokens per unit" in text  # people read tokens, the unit printed

    # --max-price is in tokens like every amount a person types; base units only in --json.
    dearer = run(
        env, "job", "submit", "matmul", "--param", "n=8", "--param", "seed=9",
        "--max-price", "0.0025", "--json",
    )  # fmt: skip
    assert json.loads(dearer.stdout)["status"]["max_price_per_unit"] == str(25 * 10**14)
    for bad, says in (("ten", "not a number"), ("0", "positive"), ("1e-19", "18 decimals")):
        refused = run(env, "job", "submit", "matmul", "--param", "n=8", "--max-price", bad, code=1)
        assert f"--max-price {bad!r}" in refused.stderr and says in refused.stderr

    failed = run(env, "job", "result", str(job_id), "--json", code=1)
    assert failed.stderr.startswith(f"error: job {job_id} is open: no result committed yet")

    world.cast.matcher.assign(job_id, [world.cast.providers["alice"].address])
    payload = payload_for(job_id, seed=7)
    deliver(world, job_id, "alice", payload)
    res = json.loads(
        run(env, "job", "result", str(job_id), "--out", str(tmp_path), "--json").stdout
    )
    assert res["ok"] and res["digest"] == "0x" + payload.digest().hex()
    assert res["outputs"] == {"c": {"dtype": "float32", "shape": [8, 8]}}
    assert list(res) == [
        "job_id", "ok", "provider", "digest", "failure", "message", "outputs", "path", "rejected",
    ]  # fmt: skip
    np.testing.assert_array_equal(load_file(res["path"])["c"], payload.outputs["c"])
    listed = json.loads(run(env, "job", "list", "--json", "--source", "chain").stdout)
    assert job_id in [j["job_id"] for j in listed["jobs"]]
    table = run(env, "job", "list", "--source", "chain").stdout.splitlines()
    columns = ["job", "kind", "state", "final", "result", "escrow", "cost", "units", "xr"]
    assert table[0].split() == columns
    (row,) = [line.split() for line in table[1:-1] if line.split()[0] == str(job_id)]
    (mine,) = [j for j in listed["jobs"] if j["job_id"] == job_id]
    assert row[1:5] == ["matmul", "committed", "no", "-"]
    assert row[5:7] == [format_tokens(int(mine["escrow"])), "-"]  # no cost before it is final
    assert mine["kind"] == "matmul" and mine["cost"] is None
    assert list(mine) == [
        "job_id", "state", "units", "replicas", "max_price_per_unit", "escrow", "spec_hash",
        "failure", "kind", "cost",
    ]  # fmt: skip
    shown = run(env, "job", "status", str(job_id)).stdout
    assert " UTC (" in shown  # the deadline as a time, with its unix seconds


def test_cli_errors_name_the_fix(env: dict[str, str], tmp_path: Path) -> None:
    bad = run(env, "job", "submit", "matmul", "--param", "n=8", code=1)
    assert bad.stderr.startswith("error: invalid job spec: ") and "seed" in bad.stderr
    gone = run(env, "job", "submit", "embed", str(tmp_path / "none.txt"), code=1)
    assert "error: no input file at" in gone.stderr
    unknown = run(env, "job", "status", "999999", code=1)
    assert "error: no job 999999" in unknown.stderr
    dead = {**env, "DEPIN_REQUESTER_RPC_URL": f"http://127.0.0.1:{free_port()}"}
    assert "cannot reach the RPC" in run(dead, "job", "list", code=1).stderr


def test_cli_wallet_new_faucet_balance_submit(
    world: World, env: dict[str, str], tmp_path: Path
) -> None:
    password = tmp_path / "password"
    password.write_text("correct horse\n")
    wallets = tmp_path / "wallets"
    bare = {k: v for k, v in env.items() if k != "DEPIN_REQUESTER_PRIVATE_KEY"}
    bare["DEPIN_REQUESTER_WALLET_DIR"] = str(wallets)
    new = ("wallet", "new", "--name", "w1", "--password-file", str(password))
    made = json.loads(run(bare, *new, "--json").stdout)
    keystore = wallets / "w1.json"
    assert made["keystore"] == str(keystore) and keystore.stat().st_mode & 0o777 == 0o600
    again = run(bare, *new, code=1)
    assert "exists; choose another --name" in again.stderr

    empty = json.loads(run(bare, "wallet", "balance", "--wallet", "w1", "--json").stdout)
    assert empty == {"address": made["address"], "eth": "0", "tokens": "0", "credits": "0"}

    # Without the owner's key the faucet mints as the token owner (Anvil impersonation)...
    run(bare, "wallet", "faucet", "--wallet", "w1", "--eth", "1", "--tokens", "1.5", "--json")
    funded = json.loads(run(bare, "wallet", "balance", made["address"], "--json").stdout)
    assert (funded["eth"], funded["tokens"]) == (str(10**18), str(15 * 10**17))
    owner = world.cast.owner.token_owner()
    with pytest.raises(Web3RPCError):  # ...and ends the impersonation
        world.cast.owner.token.functions.mint(made["address"], 1).transact({"from": owner})
    # ...with it, signs as the owner.
    minter = {**bare, "DEPIN_DEVNET_MINTER_KEY": "0x" + bytes(world.owner.key).hex()}
    run(minter, "wallet", "faucet", "--wallet", "w1", "--eth", "0", "--tokens", "3.5", "--json")
    funded = json.loads(run(bare, "wallet", "balance", made["address"], "--json").stdout)
    assert (funded["eth"], funded["tokens"]) == (str(10**18), str(5 * 10**18))
    bad_key = run(
        {**bare, "DEPIN_DEVNET_MINTER_KEY": "0x12"}, "wallet", "faucet", made["address"], code=1
    )
    assert "--minter-key is not a usable key" in bad_key.stderr
    bad_amount = run(bare, "wallet", "faucet", made["address"], "--tokens", "lots", code=1)
    assert "--tokens 'lots' is not a number" in bad_amount.stderr

    out = run(
        bare,
        "job",
        "submit",
        "matmul",
        "--param",
        "n=8",
        "--param",
        "seed=1",
        "--wallet",
        "w1",
        "--password-file",
        str(password),
        "--json",
    )
    job_id = json.loads(out.stdout)["job_id"]
    assert world.cast.owner.job(job_id).requester == made["address"]
    # Reading needs only the address: no password asked (none given here, no terminal).
    listed = json.loads(
        run(bare, "job", "list", "--wallet", "w1", "--source", "chain", "--json").stdout
    )
    assert [j["job_id"] for j in listed["jobs"]] == [job_id]
    shown = json.loads(run(bare, "job", "status", str(job_id), "--wallet", "w1", "--json").stdout)
    assert shown["requester"] == made["address"]
    # Acting or decrypting does need the key.
    refused = run(bare, "job", "cancel", str(job_id), "--wallet", "w1", code=1)
    assert "no password: pass --password-file" in refused.stderr


def test_cli_an_ape_account_is_a_wallet(world: World, env: dict[str, str], tmp_path: Path) -> None:
    # The account is made by Ape itself, as `ape accounts import` would.
    ape_home = tmp_path / "ape"
    key = "0x" + "5e" * 32
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ape_accounts import import_account_from_private_key as imp; "
            "print(imp('dev', 'ape passphrase', sys.argv[1]).address)",
            key,
        ],
        env={**os.environ, "APE_DATA_FOLDER": str(ape_home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    address = made.stdout.strip().splitlines()[-1]
    password = tmp_path / "password"
    password.write_text("ape passphrase\n")
    bare = {k: v for k, v in env.items() if k != "DEPIN_REQUESTER_PRIVATE_KEY"}
    bare["APE_DATA_FOLDER"] = str(ape_home)
    run(bare, "wallet", "faucet", "--wallet", "ape:dev", "--eth", "1", "--tokens", "1")
    balance = json.loads(run(bare, "wallet", "balance", "--wallet", "ape:dev", "--json").stdout)
    assert balance["address"] == address and balance["tokens"] == str(10**18)
    out = run(
        bare, "job", "submit", "matmul", "--param", "n=8", "--param", "seed=2",
        "--wallet", "ape:dev", "--password-file", str(password), "--json",
    )  # fmt: skip
    assert world.cast.owner.job(json.loads(out.stdout)["job_id"]).requester == address
    missing = run(bare, "wallet", "balance", "--wallet", "ape:nobody", code=1)
    assert "no Ape account 'nobody'" in missing.stderr
    new = ("wallet", "new", "--name", "ape:dev", "--password-file", str(password))
    refused = run(bare, *new, code=1)
    assert "names an Ape account; create those with `ape accounts generate`" in refused.stderr


def test_cli_reads_a_config_file_instead_of_variables(
    world: World, env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "project" / "depin.toml"
    config.parent.mkdir()
    config.write_text(
        f'rpc_url = "{world.anvil_url}"\n'
        f'deployment_file = "{world.deployment_file}"\n'
        f'relayer_url = "{world.api_url}"\n'
        "[requester]\n"
        f'private_key = "{env["DEPIN_REQUESTER_PRIVATE_KEY"]}"\n'
    )
    unset: dict[str, str | None] = {name: None for name in env}
    result = CliRunner().invoke(
        cli, ["wallet", "balance", "--json"], env={**unset, "DEPIN_CONFIG": str(config)}
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["address"] == world.requester_account.address
    config.write_text(config.read_text() + 'colour = "blue"\n')
    bad = CliRunner().invoke(cli, ["wallet", "balance"], env={**unset, "DEPIN_CONFIG": str(config)})
    assert bad.exit_code == 1 and "unknown key(s) colour in [requester]" in bad.stderr


def test_cli_faucet_refuses_other_chains(world: World, env: dict[str, str], tmp_path: Path) -> None:
    # A node of its own: the refusal is about the chain id, which the shared node cannot change.
    with Anvil(chain_id=5) as other:
        w3 = Web3(Web3.HTTPProvider(other.url))
        dep = replace(world.cast.deployment, chain_id=5)
        path = tmp_path / "deployment.json"
        dep.write(path)
        del w3
        out = run(
            {**env, "DEPIN_REQUESTER_RPC_URL": other.url},
            "wallet",
            "faucet",
            world.requester_account.address,
            "--deployment",
            str(path),
            "--minter-key",
            "0x" + bytes(world.owner.key).hex(),
            code=1,
        )
    assert "the faucet works only on a devnet (chain 31337); this is chain 5" in out.stderr


def test_status_without_a_relayer_is_chain_only(world: World, req: Requester) -> None:
    job_id = matmul_job(req, world, "alice")
    dead = f"http://127.0.0.1:{free_port()}"
    with world.requester(relayer_url=dead) as offline:
        status = offline.status(job_id)
        assert status.state is JobState.ASSIGNED and status.results is None
        assert status.history is None and not status.result_available
        assert [p.committed for p in status.participants] == [False]
        with pytest.raises(RelayerUnreachable):
            offline.list_jobs(source="relayer")
        assert job_id in [j.job_id for j in offline.list_jobs()]  # auto: from the chain logs


def test_cli_submit_wait_shows_progress_and_fetches(
    world: World, env: dict[str, str], tmp_path: Path
) -> None:
    m = world.cast.owner
    count = m.job_count()
    errors: list[BaseException] = []

    def provider() -> None:  # plays the matcher, alice and the keeper once the job exists
        try:
            deadline = time.monotonic() + 20
            while m.job_count() == count:
                assert time.monotonic() < deadline, "the CLI created no job"
                time.sleep(0.05)
            job_id = count + 1
            world.cast.matcher.assign(job_id, [world.cast.providers["alice"].address])
            time.sleep(0.2)
            deliver(world, job_id, "alice", payload_for(job_id, seed=11))
            time.sleep(1.0)  # --wait goes on past the commit: the result is not final yet
            scenarios.draw_clear(world.cast.keeper, job_id)  # the audit rate has a floor > 0
            advance(world.w3, m.params().challenge_window + 1)
            m.finalize(job_id)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=provider, daemon=True)
    thread.start()
    out = run(
        env,
        "job",
        "submit",
        "matmul",
        "--param",
        "n=8",
        "--param",
        "seed=4",
        "--wait",
        "--timeout",
        "30",
        "--out",
        str(tmp_path / "r.safetensors"),
    )
    thread.join(timeout=30)
    assert not errors, errors
    job_id = count + 1
    assert f"job {job_id} created" in out.stdout
    assert f"job {job_id}: settled (final: paid to the upheld result)" in out.stdout
    assert f"result of {world.cast.providers['alice'].address} verified" in out.stdout
    assert "settled" in out.stderr.splitlines()[-1]  # the progress line's final state
    expected = payload_for(job_id, seed=11).outputs["c"]
    np.testing.assert_array_equal(load_file(tmp_path / "r.safetensors")["c"], expected)


def test_cli_wait_says_what_is_final_and_fails_on_a_job_without_result(
    world: World, env: dict[str, str], req: Requester
) -> None:
    # --until result returns at the first result, and says it may still be reversed.
    job_id = matmul_job(req, world, "alice")
    deliver(world, job_id, "alice", payload_for(job_id, seed=12))
    early = run(env, "job", "wait", str(job_id), "--until", "result", "--timeout", "20")
    assert (
        f"job {job_id}: committed (result available, not final: the challenge window or an "
        "audit may reverse it)"
    ) in early.stdout

    # A job that ends without a result is a failure to whoever waited for it.
    submitted = run(env, "job", "submit", "matmul", "--param", "n=8", "--param", "seed=1", "--json")
    lost = json.loads(submitted.stdout)["job_id"]
    req.cancel(lost)
    ended = run(env, "job", "wait", str(lost), "--timeout", "20", code=1)
    state = req.status(lost).state.name.lower()
    assert state in ("expired", "refunded")
    assert (
        f"job {lost}: {state} (final: no result was upheld, the escrow is refunded)" in ended.stdout
    )
    bad = run(env, "job", "wait", str(lost), "--until", "soon", code=1)
    assert "--until is 'terminal' or 'result', not 'soon'" in bad.stderr


def test_status_says_why_an_open_job_waits_and_what_would_fix_it(
    world: World, env: dict[str, str], req: Requester
) -> None:
    stingy = req.submit("matmul", parameters=MATMUL, max_price_per_unit=PRICE // 4)
    crowded = req.submit("matmul", parameters=MATMUL, max_price_per_unit=PRICE, replicas=5)
    world.listener.poll_once()
    try:
        status = req.status(stingy)
        assert status.state is JobState.OPEN and status.waiting is not None
        assert status.waiting.startswith("0 live providers ask at most your max price")
        assert status.waiting.endswith(": raise --max-price to that")
        text = run(env, "job", "status", str(stingy)).stdout
        assert f"  waiting: {status.waiting}" in text.splitlines()
        assert json.loads(run(env, "job", "status", str(stingy), "--json").stdout)["waiting"] == (
            status.waiting
        )
        assert req.status(crowded).waiting == (
            "3 registered, bonded providers on the market; the job needs 5: wait for providers "
            "to join, or lower the replicas"
        )
    finally:
        req.cancel(stingy)
        req.cancel(crowded)
    world.listener.poll_once()
    assert req.status(stingy).waiting is None  # said only while the job is open


def test_market_shows_asks_and_quotes_a_job_before_paying(
    world: World, env: dict[str, str]
) -> None:
    world.listener.poll_once()
    m = world.cast.owner
    before = m.balance_of(world.requester_account.address)
    data = json.loads(run(env, "market", "--units", "3", "--replicas", "3", "--json").stdout)
    asks = [m.provider(p.address).price_per_unit for p in world.cast.providers.values()]
    assert data["market"]["registered"] == len(asks) == 3
    (cpu,) = data["market"]["profiles"]
    assert cpu["profile"] == world.cast.deployment.profiles[0] and cpu["live"] == 3
    assert (int(cpu["lowest"]), int(cpu["highest"])) == (min(asks), max(asks))
    quoted = data["quote"]
    assert int(quoted["escrow"]) == m.params().escrow(3, 3, 10**15)
    assert quoted["takeable"] is True and quoted["eligible"] == 3

    stingy = run(env, "market", "--max-price", "0.000000000000000001").stdout
    assert "not takeable now: 0 live providers ask at most your max price" in stingy
    assert "raise --max-price to that" in stingy
    assert m.balance_of(world.requester_account.address) == before  # a quote costs nothing


def test_provider_status_says_why_it_gets_no_jobs(world: World, req: Requester) -> None:
    # Earlier tests' open jobs (of several requesters) expire once their accept window passed.
    world.listener.poll_once()
    opened = httpx.get(f"{world.api_url}/jobs", params={"state": "open", "limit": 500}).json()
    if opened["jobs"]:
        advance(world.w3, max(int(j["accept_window"]) for j in opened["jobs"]) + 1)
        for leftover in opened["jobs"]:
            world.cast.owner.expire(int(leftover["job_id"]))
    alice = world.cast.providers["alice"].address
    stingy = req.submit("matmul", parameters=MATMUL, max_price_per_unit=1)
    world.listener.poll_once()
    env = {
        "DEPIN_PROVIDER_RPC_URL": world.anvil_url,
        "DEPIN_PROVIDER_DEPLOYMENT_FILE": str(world.deployment_file),
        "DEPIN_PROVIDER_RELAYER_URL": world.api_url,
    }
    try:
        shown = run(env, "provider", "status", "--address", alice, "--json")
        assert json.loads(shown.stdout)["why_idle"] == [
            "1 of 1 open jobs pay less per unit than you ask"
        ]
        text = run(env, "provider", "status", "--address", alice).stdout
        assert "  why no jobs: 1 of 1 open jobs pay less per unit than you ask" in text
        gone = {**env, "DEPIN_PROVIDER_RELAYER_URL": f"http://127.0.0.1:{free_port()}"}
        down = run(gone, "provider", "status", "--address", alice).stdout
        assert "why no jobs: the relayer at http://127.0.0.1:" in down
    finally:
        req.cancel(stingy)
    world.listener.poll_once()
    shown = run(env, "provider", "status", "--address", alice, "--json")
    assert json.loads(shown.stdout)["why_idle"] == ["no open jobs on the market"]
