"""Entry point of the `depin` command."""

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from marketplace.cli import devnet, job, market, provider, relayer, wallet
from marketplace.cli.common import debugging, set_debug, unexpected

# Typer's own traceback printer is off: an unexpected error is one line unless --debug (`run`).
app = typer.Typer(name="depin", no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(relayer.app, name="relayer")
app.add_typer(job.app, name="job")
app.add_typer(wallet.app, name="wallet")
app.add_typer(devnet.app, name="devnet")
app.add_typer(provider.app, name="provider")
app.command("market")(market.market)


# A callback keeps `depin` a command group even while it has a single command.
@app.callback()
def main(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="DEPIN_DEBUG",
            help="Print the traceback of an error, not only its one-line message (DEPIN_DEBUG).",
            show_envvar=False,
        ),
    ] = False,
) -> None:
    """GPU compute marketplace settled by smart contracts."""
    set_debug(debug)


@app.command("version")
def show_version() -> None:
    """Print the installed depin-compute version."""
    try:
        typer.echo(version("depin-compute"))
    except PackageNotFoundError:
        typer.echo("depin-compute (not installed)")
        raise typer.Exit(1) from None


def run() -> None:
    """The `depin` console script: an error nobody anticipated prints one line naming
    `--debug`, and exits 1; with --debug, its traceback."""
    try:
        app()
    except Exception as exc:  # typer.Exit and click's usage errors are SystemExit, not caught
        if debugging():
            raise
        typer.echo(f"error: {unexpected(exc)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
