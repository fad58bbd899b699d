"""`depin provider`: register, stake, unbond, withdraw, status, and run the agent and workers.

Configuration comes from `DEPIN_PROVIDER_*` variables (see provider.settings); the options
below override them. Amounts are whole tokens, decimals allowed ("1000", "0.5").
"""

from __future__ import annotations

import logging
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from pydantic import SecretStr

from marketplace.cli.common import (
    JsonOpt,
    PasswordFileOpt,
    command,
    deployment_option,
    emit,
    emit_event,
    errors,
    fail,
    read_password,
    relayer_url_option,
    rpc_url_option,
)
from marketplace.protocol.client import (
    Job,
    JobState,
    Market,
    Participant,
    ProviderRecord,
    ProviderTerms,
)
from marketplace.protocol.deployment import Deployment, connect_deployment
from marketplace.protocol.errors import ConfigError, DepinError
from marketplace.protocol.places import wallet_path
from marketplace.protocol.tokens import UINT80_MAX, format_tokens, parse_tokens
from provider.settings import ProviderSettings

app = typer.Typer(
    name="provider", no_args_is_help=True, help="Sell compute: register, stake, run the agent."
)

_UINT16_MAX = 2**16 - 1  # VRAM GiB
_UINT32_MAX = 2**32 - 1  # min exec window, max units
_GPU_MODEL_BYTES = 32
#: Defaults of `register`: the shortest exec window this provider accepts (seconds) and the
#: most units it takes per job as executor.
DEFAULT_MIN_EXEC_WINDOW = 60
DEFAULT_MAX_UNITS = 1_000_000

_ENV = "DEPIN_PROVIDER_"
RpcOpt = Annotated[str | None, rpc_url_option(_ENV)]
DeploymentOpt = Annotated[Path | None, deployment_option(_ENV)]
KeystoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        help="Encrypted keystore of the provider key (DEPIN_PROVIDER_KEYSTORE_FILE); its "
        "password comes from --password-file, DEPIN_PROVIDER_KEYSTORE_PASSWORD or a prompt.",
    ),
]
WalletOpt = Annotated[
    str | None,
    typer.Option(
        "--wallet",
        help="Wallet name: NAME.json in DEPIN_PROVIDER_WALLET_DIR, as `depin wallet new|import` "
        "writes it, or ape:ALIAS for an Ape account (instead of --keystore).",
    ),
]
BrokerOpt = Annotated[
    str | None,
    typer.Option(
        "--broker-url", help="Redis URL of the Celery broker (DEPIN_PROVIDER_BROKER_URL)."
    ),
]
QueueOpt = Annotated[
    str | None,
    typer.Option("--queue", help="Celery queue of this provider (DEPIN_PROVIDER_QUEUE)."),
]
RelayerOpt = Annotated[str | None, relayer_url_option(_ENV)]


# ---------------------------------------------------------------------- helpers


# Settings fields whose option has another name.
_OPTIONS = {
    "deployment_file": "--deployment",
    "keystore_file": "--keystore",
    "capacity": "--concurrency",
}


def _errors() -> AbstractContextManager[None]:
    """`errors()` naming each bad ProviderSettings field by its variable and option."""
    return errors(_ENV, _OPTIONS)


def _account(settings: ProviderSettings) -> LocalAccount:
    """The provider key; asks for the keystore password on a terminal when none is set."""
    if (
        settings.keystore_file is not None
        and settings.keystore_password is None
        and settings.private_key is None
        and sys.stdin.isatty()
    ):
        password = typer.prompt(f"password of {settings.keystore_file}", hide_input=True)
        settings = settings.model_copy(update={"keystore_password": SecretStr(password)})
    return settings.account()


def profile_mask(names: list[str], defined: list[str]) -> int:
    """The registry's profile bit mask of `names`; ids are positions in `defined`."""
    mask = 0
    for name in names:
        if name not in defined:
            known = ", ".join(defined) or "none"
            raise ConfigError(
                f"the deployment defines no profile {name!r} (it defines: {known}); pass "
                "--profile with one of those, or use the deployment that defines it"
            )
        mask |= 1 << defined.index(name)
    return mask


def profile_names(mask: int, defined: list[str]) -> list[str]:
    """The names of the bits set in `mask`; bits the deployment file does not name as `#id`."""
    names = []
    for bit in range(mask.bit_length()):
        if mask >> bit & 1:
            names.append(defined[bit] if bit < len(defined) else f"#{bit}")
    return names


def _gpu_model(name: str) -> str:
    """`name` cut to the registry's 32 bytes on a character boundary."""
    raw = name.encode()[:_GPU_MODEL_BYTES]
    return raw.decode(errors="ignore")


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


@dataclass
class _Session:
    market: Market
    deployment: Deployment


def _connect(settings: ProviderSettings, account: LocalAccount | None) -> _Session:
    deployment = Deployment.load(settings.deployment_file)
    w3 = connect_deployment(settings.rpc_url, deployment)
    return _Session(Market(w3, deployment, account), deployment)


@dataclass(frozen=True)
class _ChainOptions:
    """The chain and key options of every command (see `common.command`)."""

    rpc_url: RpcOpt = None
    deployment_file: DeploymentOpt = None
    keystore: KeystoreOpt = None
    wallet: WalletOpt = None
    password_file: PasswordFileOpt = None

    def settings(self, **options: Any) -> ProviderSettings:
        """ProviderSettings from the environment with the options that were given on top;
        the keystore from --keystore or --wallet, its password from --password-file."""
        if self.wallet is not None and self.keystore is not None:
            raise fail("give either --wallet or --keystore, not both")
        given = {
            "rpc_url": self.rpc_url,
            "deployment_file": self.deployment_file,
            "keystore_file": self.keystore,
            **options,
        }
        overrides = {k: v for k, v in given.items() if v is not None}
        settings = ProviderSettings(**overrides)
        if self.wallet is not None:
            with errors():
                overrides["keystore_file"] = wallet_path(
                    self.wallet, settings.wallet_dir, variable="DEPIN_PROVIDER_WALLET_DIR"
                )
        if "keystore_file" in overrides:
            overrides["private_key"] = None  # an explicit keystore wins over a key in the env
        if self.password_file is not None:
            overrides["keystore_password"] = SecretStr(
                read_password(self.password_file, "DEPIN_PROVIDER_KEYSTORE_PASSWORD")
            )
        return ProviderSettings(**overrides)

    def market(self) -> Market:
        """The market, signing with the provider key."""
        settings = self.settings()
        return _connect(settings, _account(settings)).market


def _chain_time(market: Market) -> int:
    return int(market.w3.eth.get_block("latest")["timestamp"])


def _tx(receipt: Any) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


def _terms_data(record: ProviderRecord, defined: list[str]) -> dict[str, Any]:
    return {
        "profiles": profile_names(record.profile_mask, defined),
        "price_per_unit": format_tokens(record.price_per_unit),
        "gpu_model": record.gpu_model,
        "vram_gib": record.vram_gib,
        "endpoint": record.endpoint,
        "min_exec_window": record.min_exec_window,
        "max_units": record.max_units,
    }


# ---------------------------------------------------------------------- chain commands


@command(app, "register", chain=_ChainOptions)
def register(
    price: Annotated[
        str, typer.Option("--price", help="Price per unit of work, in tokens (e.g. 0.001).")
    ],
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint", help="Public URL of this provider, if any; --update keeps the old one."
        ),
    ] = None,
    profiles: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            help="Determinism profile to offer, by name; repeat for several. Default: the "
            "profile of the detected device.",
        ),
    ] = None,
    min_exec_window: Annotated[
        int | None,
        typer.Option(
            "--min-exec-window",
            help="Shortest execution window (seconds) of a job this provider accepts; the "
            f"matcher never assigns it a job with less. Default {DEFAULT_MIN_EXEC_WINDOW}; "
            "--update keeps the old one.",
        ),
    ] = None,
    max_units: Annotated[
        int | None,
        typer.Option(
            "--max-units",
            help="Most units of work per job this provider takes as executor. Default "
            f"{DEFAULT_MAX_UNITS:_}; --update keeps the old one.",
        ),
    ] = None,
    update: Annotated[
        bool, typer.Option("--update", help="If already registered, replace the terms.")
    ] = False,
    *,
    chain: _ChainOptions,
    as_json: JsonOpt = False,
) -> None:
    """Register this machine's hardware (GPU model and VRAM, or CPU) and terms on-chain."""
    with _errors():
        settings = chain.settings()
        price_units = parse_tokens(price, what="price", maximum=UINT80_MAX)
        _check_window_and_units(min_exec_window, max_units)
        session = _connect(settings, _account(settings))
        from provider.runtime.device import hardware, profile_name  # torch: slow to import

        hw = hardware()
        names = list(profiles) if profiles else [profile_name()]
        mask = profile_mask(names, session.deployment.profiles)
        market = session.market
        current = market.provider(market.address)
        registered = current.registered
        if registered and not update:
            raise ConfigError(
                f"{market.address} is already registered; pass --update to replace its terms, "
                "or see them with `depin provider status`"
            )
        if endpoint is None:
            endpoint = current.endpoint if registered else ""
        if min_exec_window is None:
            min_exec_window = current.min_exec_window if registered else DEFAULT_MIN_EXEC_WINDOW
        if max_units is None:
            max_units = current.max_units if registered else DEFAULT_MAX_UNITS
        terms = ProviderTerms(
            profile_mask=mask,
            price_per_unit=price_units,
            vram_gib=min(hw.vram_gib, _UINT16_MAX),
            gpu_model=_gpu_model(hw.model),
            endpoint=endpoint,
            min_exec_window=min_exec_window,
            max_units=max_units,
        )
        receipt = market.update_terms(terms) if registered else market.register(terms)
    action = "updated" if registered else "registered"
    data = {
        "address": market.address,
        "action": action,
        "tx": _tx(receipt),
        "profiles": names,
        "price_per_unit": format_tokens(terms.price_per_unit),
        "gpu_model": terms.gpu_model,
        "vram_gib": terms.vram_gib,
        "endpoint": terms.endpoint,
        "min_exec_window": terms.min_exec_window,
        "max_units": terms.max_units,
    }
    emit(
        data,
        as_json,
        f"{action} {market.address}: {', '.join(names)} at {data['price_per_unit']} tokens/unit, "
        f"{terms.gpu_model} {terms.vram_gib} GiB, exec window >= {terms.min_exec_window} s, "
        f"at most {terms.max_units} units per job",
    )


def _check_window_and_units(min_exec_window: int | None, max_units: int | None) -> None:
    """The registry's bounds on the two terms, said before any transaction."""
    if min_exec_window is not None and not 0 <= min_exec_window <= _UINT32_MAX:
        raise ConfigError(
            f"--min-exec-window {min_exec_window} must be between 0 (only the protocol's floor) "
            f"and {_UINT32_MAX} seconds"
        )
    if max_units is not None and not 1 <= max_units <= _UINT32_MAX:
        raise ConfigError(f"--max-units {max_units} must be between 1 and {_UINT32_MAX}")


@command(app, "stake", chain=_ChainOptions)
def stake(
    amount: Annotated[str, typer.Argument(help="Tokens to stake, e.g. 1000 or 0.5.")],
    *,
    chain: _ChainOptions,
    as_json: JsonOpt = False,
) -> None:
    """Stake tokens from the wallet (approves the registry first when needed)."""
    with _errors():
        units = parse_tokens(amount)
        market = chain.market()
        me = market.address
        if not market.provider(me).registered:
            raise ConfigError(f"{me} is not registered; run `depin provider register` first")
        balance = market.balance_of(me)
        if balance < units:
            raise ConfigError(
                f"the wallet {me} holds {format_tokens(balance)} tokens, fewer than "
                f"{format_tokens(units)}; fund it or stake less"
            )
        receipt = market.stake(units)
        record = market.provider(me)
    data = {
        "address": me,
        "staked": format_tokens(units),
        "stake": format_tokens(record.stake),
        "free_stake": format_tokens(record.free_stake),
        "tx": _tx(receipt),
    }
    emit(
        data,
        as_json,
        f"staked {data['staked']} tokens; stake now {data['stake']} ({data['free_stake']} free)",
    )


@command(app, "unbond", chain=_ChainOptions)
def unbond(
    amount: Annotated[
        str | None, typer.Argument(help="Tokens to unbond, e.g. 400; omit with --cancel.")
    ] = None,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Cancel the pending unbond; the stake stays.")
    ] = False,
    *,
    chain: _ChainOptions,
    as_json: JsonOpt = False,
) -> None:
    """Request to unbond stake (withdrawable after the unbonding period), or cancel it."""
    with _errors():
        if cancel == (amount is not None):
            raise ConfigError("give an AMOUNT to unbond, or --cancel, not both")
        units = parse_tokens(amount) if amount is not None else 0
        market = chain.market()
        me = market.address
        before = market.provider(me)
        _check_unbond(me, before, None if cancel else units)
        receipt = market.cancel_unbond() if cancel else market.request_unbond(units)
        record = market.provider(me)
    data: dict[str, Any]
    if cancel:
        data = {
            "address": me,
            "cancelled": format_tokens(before.unbonding),
            "free_stake": format_tokens(record.free_stake),
            "tx": _tx(receipt),
        }
        text = f"unbond of {data['cancelled']} tokens cancelled; {data['free_stake']} free"
    else:
        data = {
            "address": me,
            "unbonding": format_tokens(record.unbonding),
            "unlock_at": record.unbond_at,
            "unlock_time": _when(record.unbond_at),
            # The relayer assigns no new job to a provider with an unbond pending.
            "takes_new_jobs": False,
            "tx": _tx(receipt),
        }
        text = (
            f"unbonding {data['unbonding']} tokens; withdraw them with `depin provider "
            f"withdraw` after {data['unlock_time']}. Until then no new jobs are assigned to "
            "you (running ones go on); `depin provider unbond --cancel` takes jobs again"
        )
    emit(data, as_json, text)


def _check_unbond(me: str, record: ProviderRecord, units: int | None) -> None:
    """The registry's unbond checks, said in tokens: request `units`, or cancel when None."""
    if not record.registered:
        raise ConfigError(f"{me} is not registered; run `depin provider register` first")
    if units is None:
        if record.unbond_at == 0:
            raise ConfigError("no unbond is pending; request one with `depin provider unbond N`")
        return
    if record.unbond_at != 0:
        raise ConfigError(
            f"an unbond of {format_tokens(record.unbonding)} tokens is pending until "
            f"{_when(record.unbond_at)}; cancel it with `depin provider unbond --cancel`, or "
            "withdraw it once unlocked"
        )
    if units > record.free_stake:
        raise ConfigError(
            f"the free stake is {format_tokens(record.free_stake)} tokens (stake "
            f"{format_tokens(record.stake)}, locked {format_tokens(record.locked)}); "
            "unbond at most that"
        )


@command(app, "withdraw", chain=_ChainOptions)
def withdraw(
    earnings_only: Annotated[
        bool, typer.Option("--earnings-only", help="Withdraw only the market earnings.")
    ] = False,
    stake_only: Annotated[
        bool, typer.Option("--stake-only", help="Withdraw only the unbonded stake.")
    ] = False,
    *,
    chain: _ChainOptions,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw earnings and unlocked unbonded stake.

    Earnings are the market credits of settled jobs; unbonded stake moves once its unlock time
    has passed. Having nothing to withdraw is not an error.
    """
    with _errors():
        if earnings_only and stake_only:
            raise ConfigError("--earnings-only and --stake-only exclude each other; give one")
        market = chain.market()
        me = market.address
        earnings = 0 if stake_only else market.withdraw()
        unbonded = 0
        pending: dict[str, Any] | None = None
        if not earnings_only:
            record = market.provider(me)
            if record.unbond_at != 0 and record.unbond_at > _chain_time(market):
                pending = {
                    "amount": format_tokens(record.unbonding),
                    "unlock_at": record.unbond_at,
                    "unlock_time": _when(record.unbond_at),
                }
            elif record.unbond_at != 0:
                unbonded = market.withdraw_unbonded()
        balance = market.balance_of(me)
    data = {
        "address": me,
        "earnings": format_tokens(earnings),
        "stake": format_tokens(unbonded),
        "pending_unbond": pending,
        "wallet": format_tokens(balance),
    }
    moved = [
        f"{format_tokens(n)} tokens of {what}"
        for n, what in ((earnings, "earnings"), (unbonded, "unbonded stake"))
        if n
    ]
    text = (
        f"withdrew {' and '.join(moved)}; wallet now {data['wallet']}"
        if moved
        else "nothing to withdraw"
    )
    if pending is not None:
        text += f"; {pending['amount']} tokens of stake unlock at {pending['unlock_time']}"
    emit(data, as_json, text)


@command(app, "release", chain=_ChainOptions)
def release(
    job_id: Annotated[
        int, typer.Argument(min=1, help="The Assigned job whose executor seat to hand back.")
    ],
    *,
    chain: _ChainOptions,
    as_json: JsonOpt = False,
) -> None:
    """Hand back your executor seat of an Assigned job you cannot run before its deadline.

    The release fee, one job's pay (units x clearing price), goes from the seat's collateral to
    the audit pool; the rest of the collateral is unlocked at once, and the job is never
    assigned to you again. A seat left without a commit is slashed its whole collateral at the
    deadline instead. A running agent releases on its own the seats its worker cannot finish in
    time; a committed result and a verifier seat cannot be released.
    """
    with _errors():
        market = chain.market()
        me = market.address
        job = market.job(job_id)
        _check_release(me, job_id, job, market.participants(job_id), _chain_time(market))
        receipt = market.release(job_id)
        after = market.job(job_id)
        record = market.provider(me)
    data = {
        "job": job_id,
        "address": me,
        "fee": format_tokens(job.pay),
        "unlocked": format_tokens(job.collateral - job.pay),
        "job_state": after.state.name.lower(),
        "free_stake": format_tokens(record.free_stake),
        "tx": _tx(receipt),
    }
    emit(
        data,
        as_json,
        f"released your seat of job {job_id}: fee {data['fee']} tokens to the audit pool, "
        f"{data['unlocked']} unlocked ({data['free_stake']} free); the job is "
        f"{data['job_state']} now",
    )


def _check_release(
    me: str, job_id: int, job: Job, seats: list[Participant], chain_time: int
) -> None:
    """The market's release checks, said with what to do instead."""
    if job.state == JobState.NONE:
        raise ConfigError(f"job {job_id} does not exist; check the job id")
    mine = [i for i, seat in enumerate(seats) if to_checksum_address(seat.provider) == me]
    executor = [i for i in mine if i < job.replicas]
    if not executor:
        if mine:
            raise ConfigError(
                f"your seat of job {job_id} is a verifier's, which cannot be released (an "
                "audit round would be left short); keep your agent running to commit it"
            )
        raise ConfigError(f"{me} holds no executor seat of job {job_id}; check the job id")
    index = executor[0]
    if job.commit_mask >> index & 1:
        raise ConfigError(
            f"your seat of job {job_id} has committed its result, which stays (its audit draw "
            "is seeded after the commit); keep your agent running to reveal it when asked"
        )
    if not job.active_mask >> index & 1:
        raise ConfigError(f"your seat of job {job_id} was already released")
    if job.state != JobState.ASSIGNED:
        raise ConfigError(
            f"job {job_id} is {job.state.name.lower()}: only an assigned job's seat can be released"
        )
    if chain_time > job.deadline:
        raise ConfigError(
            f"the commit deadline of job {job_id} ({_when(job.deadline)}) has passed: the seat "
            "can no longer be released and is slashed as a no-show when the job is closed"
        )


@command(app, "status", chain=_ChainOptions)
def status(
    address: Annotated[
        str | None,
        typer.Option("--address", help="Provider to show; no key needed. Default: own key."),
    ] = None,
    *,
    chain: _ChainOptions,
    as_json: JsonOpt = False,
) -> None:
    """Show stake, locked collateral, unbonding, earnings, wallet balance, jobs and terms."""
    with _errors():
        if address is not None and not is_address(address):
            raise ConfigError(f"--address {address!r} is not an address; give 0x and 40 hex")
        settings = chain.settings()
        who = to_checksum_address(address) if address else _account(settings).address
        session = _connect(settings, None)
        market = session.market
        record = market.provider(who)
        credits = market.credits(who)
        balance = market.balance_of(who)
        now = _chain_time(market)
    unbonding = (
        {
            "amount": format_tokens(record.unbonding),
            "unlock_at": record.unbond_at,
            "unlock_time": _when(record.unbond_at),
            "unlocked": record.unbond_at <= now,
        }
        if record.unbond_at
        else None
    )
    data: dict[str, Any] = {
        "address": who,
        "registered": record.registered,
        "stake": format_tokens(record.stake),
        "locked": format_tokens(record.locked),
        "unbonding": unbonding,
        "free_stake": format_tokens(record.free_stake),
        "earnings": format_tokens(credits),
        "wallet": format_tokens(balance),
        "jobs_done": record.jobs_done,
        "jobs_slashed": record.jobs_slashed,
        "terms": _terms_data(record, session.deployment.profiles) if record.registered else None,
    }
    lines = [f"provider {who}" + ("" if record.registered else " (not registered)")]
    lines.append(f"  stake {data['stake']}  locked {data['locked']}  free {data['free_stake']}")
    if unbonding is not None:
        state = "unlocked, withdraw it" if unbonding["unlocked"] else "unlocks"
        lines.append(f"  unbonding {unbonding['amount']} ({state} {unbonding['unlock_time']})")
    lines.append(f"  earnings {data['earnings']}  wallet {data['wallet']}")
    lines.append(f"  jobs done {record.jobs_done}  slashed {record.jobs_slashed}")
    if data["terms"] is not None:
        t = data["terms"]
        lines.append(f"  profiles {', '.join(t['profiles']) or 'none'}")
        lines.append(
            f"  price {t['price_per_unit']}/unit  gpu {t['gpu_model']} {t['vram_gib']} GiB  "
            f"endpoint {t['endpoint'] or '-'}"
        )
        lines.append(
            f"  min exec window {t['min_exec_window']} s  max units {t['max_units']:,} per job"
        )
    idle = _why_idle(settings.relayer_url, who, record)
    data["why_idle"] = idle
    if idle is None:
        lines.append(f"  why no jobs: the relayer at {settings.relayer_url} did not answer")
    elif idle:
        lines.append("  why no jobs: " + "; ".join(idle))
    emit(data, as_json, lines)


def _why_idle(relayer_url: str, who: str, record: ProviderRecord) -> list[str] | None:
    """Why the provider takes none of the open jobs (empty: it can take one), from the relayer's
    view of its liveness and of the open jobs; None when the relayer does not answer."""
    from marketplace.matching.matcher import VALID_REPLICAS, OpenJob, ProviderView
    from marketplace.matching.why import why_idle
    from marketplace.protocol.relayer_http import RelayerClient

    try:
        with RelayerClient(relayer_url, timeout=10) as relayer:
            seen = relayer.get(f"/providers/{who}")
            rows = relayer.get_json("/jobs", what="the open jobs", state="open", limit=500)["jobs"]
    except (DepinError, ValueError, KeyError, TypeError):
        return None
    live = seen.status_code == 200 and seen.json().get("live") is not False
    view = ProviderView(
        address=who,
        profile_mask=record.profile_mask,
        vram_gib=record.vram_gib,
        price_per_unit=record.price_per_unit,
        free_stake=record.free_stake,
        unbonding=record.unbond_at != 0,
        registered=record.registered,
        live=live,
        min_exec_window=record.min_exec_window,
        max_units=record.max_units,
    )
    open_jobs = [
        OpenJob(
            job_id=int(r["job_id"]),
            profile=int(r["profile"]),
            units=int(r["units"]),
            max_price_per_unit=int(r["max_price_per_unit"]),
            replicas=int(r["replicas"]),
            min_vram_gib=int(r["min_vram_gib"]),
            collateral_multiple=int(r["collateral_multiple"]),
            exec_window=int(r["exec_window"]),
            requester=str(r["requester"]),
        )
        for r in rows
        if int(r["replicas"]) in VALID_REPLICAS
    ]
    return why_idle(view, open_jobs)


# ---------------------------------------------------------------------- processes


@command(app, "run", chain=_ChainOptions)
def run(
    behavior: Annotated[
        str | None,
        typer.Option(
            "--behavior",
            help="honest (default) | lazy | copycat | no-show. TEST AIDS ONLY: every "
            "behaviour but honest cheats or skips work and gets the provider slashed "
            "(DEPIN_PROVIDER_BEHAVIOR).",
        ),
    ] = None,
    relayer_url: RelayerOpt = None,
    broker_url: BrokerOpt = None,
    queue: QueueOpt = None,
    confirmations: Annotated[
        int | None,
        typer.Option("--confirmations", help="Blocks behind the head left unapplied."),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option("--poll-interval", help="Seconds between two agent cycles."),
    ] = None,
    *,
    chain: _ChainOptions,
    as_json: JsonOpt = False,
) -> None:
    """Run the provider agent until Ctrl-C or SIGTERM.

    It watches the chain for assignments and audits, queues the work for the workers, commits
    and reveals on time and heartbeats to the relayer.
    """
    with _errors():
        settings = chain.settings(
            behavior=behavior,
            relayer_url=relayer_url,
            broker_url=broker_url,
            queue=queue,
            confirmations=confirmations,
            poll_interval=poll_interval,
        )
        address = _account(settings).address  # a missing or wrong key fails before start
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from provider.agent import run_agent  # celery, torch: kept off the other commands

    started = {
        "address": address,
        "behavior": settings.behavior,
        "queue": settings.queue,
        "relayer_url": settings.relayer_url,
    }
    if settings.behavior != "honest":
        logging.getLogger(__name__).warning(
            "behaviour %r is a test aid: this provider will be slashed", settings.behavior
        )
    emit_event({"started": started}, as_json, f"agent started: {started}")
    with _errors():
        run_agent(settings)
    emit_event({"stopped": True}, as_json, "agent stopped")


@command(app, "worker", chain=_ChainOptions)
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            help="Jobs run at once (DEPIN_PROVIDER_CAPACITY, which heartbeats announce).",
        ),
    ] = None,
    loglevel: Annotated[
        str, typer.Option("--loglevel", help="Celery log level: debug, info, warning, error.")
    ] = "info",
    broker_url: BrokerOpt = None,
    queue: QueueOpt = None,
    relayer_url: RelayerOpt = None,
    *,
    chain: _ChainOptions,
    as_json: JsonOpt = False,
) -> None:
    """Run a Celery worker that executes this provider's jobs from the queue."""
    with _errors():
        if loglevel.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"--loglevel {loglevel!r}: use debug, info, warning or error")
        settings = chain.settings(
            capacity=concurrency,
            broker_url=broker_url,
            queue=queue,
            relayer_url=relayer_url,
        )
    from provider.worker import run_worker  # celery, torch: kept off the other commands

    started = {"queue": settings.queue, "concurrency": settings.capacity}
    emit_event({"started": started}, as_json, f"worker started: {started}")
    with _errors():
        run_worker(settings, concurrency=settings.capacity, loglevel=loglevel.upper())
