"""`depin provider` against a real Anvil chain: register, stake, status, unbond (and cancel),
withdraw of earnings and of unbonded stake, and the errors a provider meets on the way. Every
value a command prints is checked against the chain through the SDK."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner
from web3 import Web3

from marketplace.cli.main import app
from marketplace.devnet.anvil import Anvil, advance, free_port, funded_account
from marketplace.devnet.scenarios import draw_clear
from marketplace.protocol.client import JobRequest, Market
from marketplace.protocol.deployment import Deployment, deploy
from marketplace.protocol.keys import write_keystore
from marketplace.protocol.tokens import format_tokens
from provider.runtime.device import profile_name
from tests.conftest import reverted

pytestmark = pytest.mark.integration

TOKEN = 10**18
CPU_PROFILE = "torch-2.13.0/cpu/float32/deterministic"


@dataclass
class Chain:
    w3: Web3
    url: str
    deployment: Deployment
    deployment_file: Path
    admin: Market
    matcher: Market


@dataclass
class Provider:
    account: LocalAccount
    env: dict[str, str]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, anvil: Anvil) -> Iterator[Chain]:
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    with reverted(w3):
        owner, matcher = funded_account(w3), funded_account(w3)
        deployment_file = tmp_path_factory.mktemp("chain") / "deployment.json"
        deployment = deploy(
            w3,
            owner,
            matchers=(matcher.address,),
            write_to=deployment_file,
        )
        admin = Market(w3, deployment, owner)
        yield Chain(w3, anvil.url, deployment, deployment_file, admin, admin.as_account(matcher))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("DEPIN_PROVIDER_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def provider(chain: Chain) -> Iterator[Provider]:
    """A fresh key with gas and 2,000 tokens, given to the CLI as DEPIN_PROVIDER_PRIVATE_KEY;
    what the test does to the chain (the clock included) is undone after it."""
    with reverted(chain.w3):
        account = funded_account(chain.w3)
        chain.admin.mint(account.address, 2_000 * TOKEN)
        env = {
            "DEPIN_PROVIDER_RPC_URL": chain.url,
            "DEPIN_PROVIDER_DEPLOYMENT_FILE": str(chain.deployment_file),
            "DEPIN_PROVIDER_PRIVATE_KEY": "0x" + bytes(account.key).hex(),
            "DEPIN_PROVIDER_RELAYER_URL": f"http://127.0.0.1:{free_port()}",  # none: chain only
        }
        yield Provider(account, env)


def cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    """Runs `depin provider ARGS` with `env`; checks the exit code; returns stdout (or stderr
    when it failed)."""
    result = CliRunner().invoke(app, ["provider", *args], env=env)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    if code:
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        return result.stderr
    return result.stdout


def cli_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(cli(env, *args, "--json"))


def test_register_stake_unbond_withdraw_against_the_chain(chain: Chain, provider: Provider) -> None:
    env, me = provider.env, provider.account.address
    market = chain.admin

    assert profile_name() == CPU_PROFILE  # these machines run the CPU build of torch
    reg = cli_json(env, "register", "--price", "0.001", "--endpoint", "http://p.example")
    assert reg["action"] == "registered" and reg["profiles"] == [CPU_PROFILE]
    record = market.provider(me)
    assert record.registered and record.profile_mask == 0b1
    assert (record.price_per_unit, record.gpu_model, record.vram_gib) == (10**15, "cpu", 0)
    assert record.endpoint == "http://p.example"
    # v2 terms: the defaults of the shortest exec window accepted and the most units per job.
    assert (record.min_exec_window, record.max_units) == (60, 1_000_000)
    assert (reg["min_exec_window"], reg["max_units"]) == (60, 1_000_000)

    again = cli(env, "register", "--price", "0.002", code=1)
    assert "already registered" in again and "--update" in again
    cli(env, "register", "--price", "0.002", "--update")  # keeps the window and the units
    record = market.provider(me)
    assert record.price_per_unit == 2 * 10**15
    assert (record.min_exec_window, record.max_units) == (60, 1_000_000)
    updated = cli_json(
        env, "register", "--price", "0.002", "--update", "--min-exec-window", "120",
        "--max-units", "5000",
    )  # fmt: skip
    assert (updated["min_exec_window"], updated["max_units"]) == (120, 5000)
    assert (market.provider(me).min_exec_window, market.provider(me).max_units) == (120, 5000)
    assert "--max-units 0 must be between 1" in cli(
        env, "register", "--price", "0.002", "--update", "--max-units", "0", code=1
    )
    assert "--min-exec-window -1" in cli(
        env, "register", "--price", "0.002", "--update", "--min-exec-window", "-1", code=1
    )

    staked = cli_json(env, "stake", "1000.5")
    assert staked["staked"] == "1000.5" and staked["stake"] == "1000.5"
    assert market.provider(me).stake == 1000 * TOKEN + TOKEN // 2

    status = cli_json(env, "status")
    assert status == {
        "address": me,
        "registered": True,
        "stake": "1000.5",
        "locked": "0",
        "unbonding": None,
        "free_stake": "1000.5",
        "earnings": "0",
        "wallet": format_tokens(market.balance_of(me)),
        "jobs_done": 0,
        "jobs_slashed": 0,
        "terms": {
            "profiles": [CPU_PROFILE],
            "price_per_unit": "0.002",
            "gpu_model": "cpu",
            "vram_gib": 0,
            "endpoint": "http://p.example",
            "min_exec_window": 120,
            "max_units": 5000,
        },
        "why_idle": None,  # no relayer answers in this test
    }
    text = cli(env, "status")
    assert "min exec window 120 s  max units 5,000 per job" in text
    assert status["wallet"] == "999.5"

    too_much = cli(env, "stake", "5000", code=1)
    assert "holds 999.5 tokens" in too_much and "fund it" in too_much

    unbond = cli_json(env, "unbond", "400")
    record = market.provider(me)
    assert unbond["unbonding"] == "400" and record.unbonding == 400 * TOKEN
    assert unbond["unlock_at"] == record.unbond_at and unbond["takes_new_jobs"] is False

    # Locked: nothing moves, which is no error; the pending unlock is reported.
    nothing = cli_json(env, "withdraw")
    assert nothing["earnings"] == "0" and nothing["stake"] == "0"
    assert nothing["pending_unbond"]["amount"] == "400"
    assert "nothing to withdraw" in cli(env, "withdraw")
    assert cli_json(env, "status")["unbonding"]["unlocked"] is False

    pending = cli(env, "unbond", "1", code=1)
    assert "an unbond of 400 tokens is pending" in pending and "unbond --cancel" in pending

    cancelled = cli_json(env, "unbond", "--cancel")
    assert cancelled["cancelled"] == "400" and cancelled["free_stake"] == "1000.5"
    assert market.provider(me).unbond_at == 0
    assert "no unbond is pending" in cli(env, "unbond", "--cancel", code=1)
    too_much = cli(env, "unbond", "2000", code=1)
    assert "free stake is 1000.5 tokens" in too_much

    said = cli(env, "unbond", "0.5")
    assert "no new jobs are assigned to you" in said and "unbond --cancel" in said
    advance(chain.w3, int(market.registry.functions.unbondingPeriod().call()) + 1)
    assert cli_json(env, "status")["unbonding"]["unlocked"] is True
    wallet = market.balance_of(me)
    moved = cli_json(env, "withdraw", "--stake-only")
    assert moved["stake"] == "0.5" and moved["pending_unbond"] is None
    assert market.balance_of(me) == wallet + TOKEN // 2
    assert market.provider(me).stake == 1000 * TOKEN
    assert "nothing to withdraw" in cli(env, "withdraw")


def test_withdraw_moves_earnings_of_a_settled_job(chain: Chain, provider: Provider) -> None:
    env, me = provider.env, provider.account.address
    cli(env, "register", "--price", "0.001", "--profile", CPU_PROFILE)
    cli(env, "stake", "100")

    requester = funded_account(chain.w3)
    chain.admin.mint(requester.address, 10 * TOKEN)
    job = chain.admin.as_account(requester).create_job(
        JobRequest(
            spec_hash=hashlib.sha256(b"provider-cli-job").digest(),
            units=100,
            max_price_per_unit=10**15,
        )
    )
    chain.matcher.assign(job, [me])
    chain.admin.as_account(provider.account).commit(job, hashlib.sha256(b"output").digest())
    draw_clear(chain.matcher, job)  # audits have a floor rate: this job's draw must clear it
    assert cli_json(env, "status")["locked"] != "0"
    advance(chain.w3, chain.admin.params().challenge_window + 1)
    chain.matcher.finalize(job)

    credits = chain.admin.credits(me)
    assert credits > 0
    status = cli_json(env, "status")
    assert status["earnings"] == format_tokens(credits)
    assert (status["jobs_done"], status["locked"]) == (1, "0")

    wallet = chain.admin.balance_of(me)
    moved = cli_json(env, "withdraw", "--earnings-only")
    assert moved["earnings"] == format_tokens(credits) and moved["stake"] == "0"
    assert chain.admin.balance_of(me) == wallet + credits
    assert chain.admin.credits(me) == 0
    assert "nothing to withdraw" in cli(env, "withdraw", "--earnings-only")


def test_release_hands_an_executor_seat_back_for_one_jobs_pay(
    chain: Chain, provider: Provider
) -> None:
    env, me = provider.env, provider.account.address
    cli(env, "register", "--price", "0.001", "--profile", CPU_PROFILE)
    cli(env, "stake", "100")
    requester = chain.admin.as_account(funded_account(chain.w3))
    chain.admin.mint(requester.address, 10 * TOKEN)

    def assigned(tag: str) -> int:
        job = requester.create_job(
            JobRequest(
                spec_hash=hashlib.sha256(tag.encode()).digest(),
                units=100,
                max_price_per_unit=10**15,
            )
        )
        chain.matcher.assign(job, [me])
        return job

    assert "does not exist" in cli(env, "release", "999", code=1)
    other = requester.create_job(
        JobRequest(spec_hash=hashlib.sha256(b"other").digest(), units=1, max_price_per_unit=1)
    )
    assert "holds no executor seat" in cli(env, "release", str(other), code=1)

    job = assigned("release-me")
    seat = chain.admin.job(job)
    before = chain.admin.provider(me)
    assert before.locked == seat.collateral > seat.pay > 0
    released = cli_json(env, "release", str(job))
    after = chain.admin.provider(me)
    # One job's pay is slashed to the audit pool; the rest of the collateral is free again.
    assert released["fee"] == format_tokens(seat.pay)
    assert released["unlocked"] == format_tokens(seat.collateral - seat.pay)
    assert (after.stake, after.locked) == (before.stake - seat.pay, 0)
    assert released["free_stake"] == format_tokens(after.free_stake)
    # Its only executor gone, the job is open to the others.
    assert released["job_state"] == "open" == chain.admin.job(job).state.name.lower()
    again = cli(env, "release", str(job), code=1)
    assert "holds no executor seat" in again  # the reopened job has no seats yet

    committed = assigned("committed")
    chain.admin.as_account(provider.account).commit(committed, hashlib.sha256(b"out").digest())
    assert "has committed its result" in cli(env, "release", str(committed), code=1)

    late = assigned("late")
    advance(
        chain.w3,
        chain.admin.job(late).deadline - int(chain.w3.eth.get_block("latest")["timestamp"]) + 1,
    )
    assert "has passed" in cli(env, "release", str(late), code=1)
    assert chain.admin.job(late).active_mask == 1  # nothing sent


def test_keystore_key_and_keyless_status(
    chain: Chain, provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keystore = write_keystore(provider.account, "hunter2", tmp_path / "key.json", iterations=2)
    env = {k: v for k, v in provider.env.items() if k != "DEPIN_PROVIDER_PRIVATE_KEY"}

    missing = cli(env, "register", "--price", "1", "--keystore", str(keystore), code=1)
    assert "DEPIN_PROVIDER_KEYSTORE_PASSWORD" in missing

    wrong = {**env, "DEPIN_PROVIDER_KEYSTORE_PASSWORD": "nope"}
    assert "cannot decrypt" in cli(wrong, "status", "--keystore", str(keystore), code=1)

    env["DEPIN_PROVIDER_KEYSTORE_PASSWORD"] = "hunter2"
    cli(env, "register", "--price", "1", "--keystore", str(keystore))
    # --keystore wins over a private key in the environment.
    other = {**env, "DEPIN_PROVIDER_PRIVATE_KEY": "0x" + "11" * 32}
    assert cli_json(other, "stake", "10", "--keystore", str(keystore))["address"] == (
        provider.account.address
    )

    # Reads need only an address; no key anywhere.
    bare = {k: v for k, v in env.items() if "KEYSTORE" not in k}
    status = cli_json(bare, "status", "--address", provider.account.address.lower())
    assert status["address"] == provider.account.address
    assert (status["stake"], status["terms"]["price_per_unit"]) == ("10", "1")
    text = cli(bare, "status", "--address", provider.account.address)
    assert "stake 10" in text and CPU_PROFILE in text


def test_errors_name_the_fix(chain: Chain, provider: Provider, tmp_path: Path) -> None:
    env = provider.env
    keyless = {k: v for k, v in env.items() if k != "DEPIN_PROVIDER_PRIVATE_KEY"}
    for args in (("stake", "1"), ("register", "--price", "1"), ("withdraw",), ("status",)):
        err = cli(keyless, *args, code=1)
        assert "DEPIN_PROVIDER_PRIVATE_KEY" in err and "DEPIN_PROVIDER_KEYSTORE_FILE" in err

    assert "not registered" in cli(env, "stake", "1", code=1)
    assert "not registered" in cli(env, "unbond", "1", code=1)
    for bad, says in (("ten", "not a number"), ("0", "positive"), ("1e-19", "18 decimals")):
        assert says in cli(env, "stake", bad, code=1)

    unknown = cli(env, "register", "--price", "1", "--profile", "torch-1/tpu", code=1)
    assert "defines no profile 'torch-1/tpu'" in unknown and CPU_PROFILE in unknown

    gone = cli(env, "status", "--deployment", str(tmp_path / "none.json"), code=1)
    assert "no deployment file" in gone
    closed = cli(env, "status", "--rpc-url", "http://127.0.0.1:9", code=1)
    assert "cannot reach the RPC" in closed

    # The right chain id, but addresses where this chain has no contracts (another deployment).
    other = json.loads(chain.deployment_file.read_text())
    other["market"] = other["registry"] = "0x" + "11" * 20
    stray = tmp_path / "other.json"
    stray.write_text(json.dumps(other))
    wrong = cli(env, "status", "--deployment", str(stray), code=1)
    assert "no JobMarket contract at 0x1111111111111111111111111111111111111111" in wrong
    assert "belongs to another chain" in wrong and len(wrong.strip().splitlines()) == 1

    # A key with tokens but no ETH: one line naming the faucet, nothing sent.
    broke = Web3().eth.account.create()
    unfunded = {**env, "DEPIN_PROVIDER_PRIVATE_KEY": "0x" + bytes(broke.key).hex()}
    before = chain.w3.eth.get_transaction_count(broke.address)
    no_gas = cli(unfunded, "register", "--price", "1", code=1)
    assert f"{broke.address} has not enough ETH to pay for gas" in no_gas
    assert "depin wallet faucet" in no_gas and len(no_gas.strip().splitlines()) == 1
    assert chain.w3.eth.get_transaction_count(broke.address) == before == 0


def test_a_wallet_and_a_password_file_as_the_requester_commands_take_them(
    chain: Chain, provider: Provider, tmp_path: Path
) -> None:
    # One wallet folder for every role: `depin wallet import` writes it, the provider uses it.
    wallets = tmp_path / "wallets"
    password = tmp_path / "pw"
    password.write_text("correct horse\n")
    key_file = tmp_path / "key"
    key_file.write_text("0x" + bytes(provider.account.key).hex() + "\n")
    args = ["wallet", "import", "--name", "prov", "--key-file", str(key_file)]
    args += ["--password-file", str(password)]
    imported = CliRunner().invoke(app, args, env={"DEPIN_REQUESTER_WALLET_DIR": str(wallets)})
    assert imported.exit_code == 0, (imported.stdout, imported.stderr)
    env = {k: v for k, v in provider.env.items() if k != "DEPIN_PROVIDER_PRIVATE_KEY"}
    env["DEPIN_PROVIDER_WALLET_DIR"] = str(wallets)
    wallet = ("--wallet", "prov", "--password-file", str(password))

    registered = cli_json(env, "register", "--price", "0.5", *wallet)
    assert registered["address"] == provider.account.address
    assert cli_json(env, "status", *wallet)["terms"]["price_per_unit"] == "0.5"

    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    undecrypted = cli(env, "status", "--wallet", "prov", "--password-file", str(wrong), code=1)
    assert "cannot decrypt" in undecrypted and "--password-file on the command line" in undecrypted
    unknown = cli(env, "status", "--wallet", "nobody", code=1)
    assert f"no wallet 'nobody' in {wallets}" in unknown and "depin wallet new" in unknown
    both = cli(env, "status", *wallet, "--keystore", str(tmp_path / "k.json"), code=1)
    assert "either --wallet or --keystore" in both
