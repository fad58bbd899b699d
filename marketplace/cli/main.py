"""Entry point of the `depin` command."""

from importlib.metadata import PackageNotFoundError, version

import typer

from marketplace.cli import devnet, job, market, relayer, wallet
from provider import cli as provider_cli

app = typer.Typer(name="depin", no_args_is_help=True)
app.add_typer(relayer.app, name="relayer")
app.add_typer(job.app, name="job")
app.add_typer(wallet.app, name="wallet")
app.add_typer(devnet.app, name="devnet")
app.add_typer(provider_cli.app, name="provider")
app.command("market")(market.market)


# A callback keeps `depin` a command group even while it has a single command.
@app.callback()
def main() -> None:
    """GPU compute marketplace settled by smart contracts."""


@app.command("version")
def show_version() -> None:
    """Print the installed depin-compute version."""
    try:
        typer.echo(version("depin-compute"))
    except PackageNotFoundError:
        typer.echo("depin-compute (not installed)")
        raise typer.Exit(1) from None


if __name__ == "__main__":
    app()
