"""`depin wallet`: create and import encrypted keystores, show balances, fund devnet wallets.

Keystores are eth-account (geth) JSON files encrypted with scrypt, written readable by their
owner only to `DEPIN_REQUESTER_WALLET_DIR` (~/.local/share/depin/wallets) as `<name>.json`; use
one with `depin job ... --wallet NAME`. Passwords come from `--password-file`, the
DEPIN_WALLET_PASSWORD variable or a prompt; a private key to import from `--key-file`,
DEPIN_WALLET_PRIVATE_KEY or a prompt, never from the command line (it would stay in the shell
history).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from marketplace.cli.common import (
    JsonOpt,
    PasswordFileOpt,
    command,
    emit,
    errors,
    fail,
    read_password,
)
from marketplace.cli.job import ChainOptions, KeystoreOpt, RequesterOptions, WalletOpt
from marketplace.protocol.tokens import format_tokens, parse_tokens

app = typer.Typer(name="wallet", no_args_is_help=True, help="Requester wallets and balances.")

#: Anvil's default chain id: the faucet refuses every other chain.
DEVNET_CHAIN_ID: Final = 31337

NameOpt = Annotated[str, typer.Option("--name", help="Wallet name (the keystore's file name).")]
DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="Keystore directory (DEPIN_REQUESTER_WALLET_DIR)."),
]
AddressArg = Annotated[str | None, typer.Argument(help="Address (default: the configured wallet).")]


def _wallet_dir(directory: Path | None) -> Path:
    from marketplace.requester import RequesterSettings

    with errors():
        return directory.expanduser() if directory is not None else RequesterSettings().wallet_dir


def _save(
    account: Any, name: str, directory: Path | None, password_file: Path | None, as_json: bool
) -> None:
    """Writes `account` as the keystore `<name>.json`, encrypted with a new password."""
    from marketplace.protocol.keys import write_keystore
    from marketplace.protocol.places import APE_PREFIX, is_wallet_name

    if name.startswith(APE_PREFIX):
        raise fail(
            f"{name!r} names an Ape account; create those with `ape accounts generate`, and use "
            "them with --wallet ape:ALIAS"
        )
    if not is_wallet_name(name):
        raise fail(f"{name!r} is not a wallet name; use letters, digits, '-' or '_'")
    path = _wallet_dir(directory) / f"{name}.json"
    if path.exists():  # before the password prompt, not after it
        raise fail(f"{path} exists; choose another --name or move the old keystore")
    password = read_password(password_file, "DEPIN_WALLET_PASSWORD", confirm=True)
    with errors():
        path = write_keystore(account, password, path)
    emit(
        {"address": account.address, "keystore": str(path)},
        as_json,
        [f"wallet {name}: {account.address}", f"  keystore {path}"],
    )


@app.command("new")
def new(
    name: NameOpt = "default",
    directory: DirOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new key and save it as an encrypted keystore."""
    from eth_account import Account

    account = Account.create()
    _save(account, name, directory, password_file, as_json)


@app.command("import")
def import_key(
    name: NameOpt = "default",
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="File holding the 0x-prefixed hex private key."),
    ] = None,
    directory: DirOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a hex private key as an encrypted keystore."""
    from eth_account import Account

    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise fail(f"cannot read the key file {key_file}: {exc.strerror}") from None
    elif "DEPIN_WALLET_PRIVATE_KEY" in os.environ:
        key = os.environ["DEPIN_WALLET_PRIVATE_KEY"].strip()
    elif sys.stdin.isatty():
        key = typer.prompt("Private key (hex)", hide_input=True).strip()
    else:
        raise fail("no key: pass --key-file or set DEPIN_WALLET_PRIVATE_KEY")
    try:
        account = Account.from_key(key)
    except Exception as exc:  # eth-keys raises several types for malformed keys
        raise fail(
            f"not a usable private key ({type(exc).__name__}); give the 32-byte key as hex"
        ) from None
    _save(account, name, directory, password_file, as_json)


@dataclass(frozen=True)
class _AccountOptions(ChainOptions):
    """The chain, and the wallet whose balances `balance` and `faucet` look at."""

    wallet: WalletOpt = None
    keystore: KeystoreOpt = None

    def chain(self) -> tuple[Any, Any]:
        """(web3, deployment) checked to be on the same chain."""
        from marketplace.protocol.deployment import Deployment, connect_deployment

        with errors():
            settings = self.settings()
            dep = Deployment.load(settings.deployment_file)
            return connect_deployment(settings.rpc_url, dep), dep

    def address(self, address: str | None) -> str:
        """`address`, else the --wallet's or --keystore's, else the configured wallet's."""
        from eth_utils.address import is_address, to_checksum_address

        from marketplace.requester import RequesterSettings

        if address is not None:
            if not is_address(address):
                raise fail(f"{address!r} is not a 0x-prefixed 20-byte address")
            return str(to_checksum_address(address))
        keystore = self.keystore
        with errors():
            if self.wallet is not None:
                keystore = RequesterSettings().wallet_path(self.wallet)
            if keystore is None:
                keystore = RequesterSettings().keystore_file
            if keystore is None:
                return str(RequesterSettings().account().address)
        from marketplace.protocol.keys import keystore_address

        with errors():
            return keystore_address(keystore)


@command(app, "balance", account=_AccountOptions)
def balance(
    address: AddressArg = None,
    *,
    account: _AccountOptions,
    as_json: JsonOpt = False,
) -> None:
    """Show ETH, token balance and withdrawable market credits."""
    from marketplace.protocol.client import Market

    who = account.address(address)
    w3, dep = account.chain()
    with errors():
        market = Market(w3, dep)
        eth = int(w3.eth.get_balance(who))
        tokens, credits = market.balance_of(who), market.credits(who)
    emit(
        {"address": who, "eth": str(eth), "tokens": str(tokens), "credits": str(credits)},
        as_json,
        [
            f"{who}",
            f"  ETH      {format_tokens(eth)}",
            f"  tokens   {format_tokens(tokens)}",
            f"  credits  {format_tokens(credits)} (withdraw with `depin wallet withdraw`)",
        ],
    )


@command(app, "faucet", account=_AccountOptions)
def faucet(
    address: AddressArg = None,
    eth: Annotated[str, typer.Option("--eth", help="ETH to add for gas (0 for none).")] = "10",
    tokens: Annotated[str, typer.Option("--tokens", help="Tokens to mint (0 for none).")] = "1000",
    minter_key: Annotated[
        str | None,
        typer.Option(
            "--minter-key",
            envvar="DEPIN_DEVNET_MINTER_KEY",
            help="Private key of the token owner (DEPIN_DEVNET_MINTER_KEY); by default the "
            "faucet mints as the token's owner through Anvil's account impersonation.",
            show_envvar=False,
        ),
    ] = None,
    *,
    account: _AccountOptions,
    as_json: JsonOpt = False,
) -> None:
    """Devnet only: give an address ETH (anvil_setBalance) and mint it tokens."""
    from eth_account import Account

    from marketplace.protocol.client import Market
    from marketplace.protocol.deployment import Deployment

    with errors():
        chain_id = Deployment.load(account.settings().deployment_file).chain_id
    if chain_id != DEVNET_CHAIN_ID:
        raise fail(
            f"the faucet works only on a devnet (chain {DEVNET_CHAIN_ID}); this is chain "
            f"{chain_id}: buy or bridge tokens there instead"
        )
    w3, dep = account.chain()
    who = account.address(address)
    minter = None
    if minter_key is not None:
        try:
            minter = Account.from_key(minter_key)
        except Exception as exc:
            raise fail(f"--minter-key is not a usable key ({type(exc).__name__})") from None
    with errors():
        wei = parse_tokens(eth, what="--eth", maximum=2**128, allow_zero=True)
        amount = parse_tokens(tokens, what="--tokens", maximum=2**128, allow_zero=True)
        market = Market(w3, dep, minter)
        if wei:
            current = int(w3.eth.get_balance(who))
            w3.provider.make_request("anvil_setBalance", [who, hex(current + wei)])
        if amount and minter is not None:
            market.mint(who, amount)
        elif amount:
            market.mint_as_owner(who, amount)
        new_eth, new_tokens = int(w3.eth.get_balance(who)), market.balance_of(who)
    emit(
        {"address": who, "eth": str(new_eth), "tokens": str(new_tokens)},
        as_json,
        [f"{who}: ETH {format_tokens(new_eth)}, tokens {format_tokens(new_tokens)}"],
    )


@command(app, "withdraw", conn=RequesterOptions)
def withdraw(*, conn: RequesterOptions, as_json: JsonOpt = False) -> None:
    """Move the wallet's market credits (refunds, returned bonds) into the wallet."""
    with errors(), conn.open() as req:
        amount = req.withdraw()
        address = req.address
    emit(
        {"address": address, "withdrawn": str(amount)},
        as_json,
        [f"{address}: withdrew {format_tokens(amount)} tokens"],
    )
