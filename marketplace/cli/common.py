"""What the `depin` command groups share: errors, output, shared options, token amounts.

Every group imports this for `--help`, so it stays light: typer, pydantic and the protocol's
errors, no web3 client, database, Celery or torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import sys
import traceback
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from pydantic import ValidationError

from marketplace.protocol.errors import DepinError

F = TypeVar("F", bound=Callable[..., Any])

#: `depin --debug` (or DEPIN_DEBUG=1): errors print their traceback before the one-line message.
_debug = False


def set_debug(on: bool) -> None:
    global _debug
    _debug = on


def debugging() -> bool:
    return _debug


JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--password-file", help="File whose first line is the keystore password."),
]


def rpc_url_option(env_prefix: str) -> Any:
    """`--rpc-url`, its help naming the variable it overrides."""
    return typer.Option("--rpc-url", help=f"JSON-RPC URL ({env_prefix}RPC_URL).")


def deployment_option(env_prefix: str) -> Any:
    """`--deployment`, its help naming the variable it overrides."""
    return typer.Option("--deployment", help=f"Deployment file ({env_prefix}DEPLOYMENT_FILE).")


def relayer_url_option(env_prefix: str) -> Any:
    """`--relayer-url`, its help naming the variable it overrides."""
    return typer.Option("--relayer-url", help=f"Relayer API URL ({env_prefix}RELAYER_URL).")


def with_options(**groups: type[Any]) -> Callable[[F], F]:
    """Lets commands share a block of options declared once, as a dataclass.

    `@command(app, name, conn=RequesterOptions)`: the dataclass's fields (typer options, each with a
    default) stand in the signature typer reads in place of the command's parameter `conn`, in
    that place; the command is called with them gathered into one `RequesterOptions`.
    """
    fields = {
        name: (group, dataclasses.fields(group), typing.get_type_hints(group, include_extras=True))
        for name, group in groups.items()
    }

    def decorate(function: F) -> F:
        signature = inspect.signature(function, eval_str=True)
        parameters: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p.name not in fields:
                parameters.append(p)
                continue
            _, group_fields, hints = fields[p.name]
            parameters += [
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=f.default,
                    annotation=hints[f.name],
                )
                for f in group_fields
            ]
        names = [p.name for p in parameters]
        assert len(names) == len(set(names)), f"{function.__name__}: an option is declared twice"

        @functools.wraps(function)
        def wrapper(**kwargs: Any) -> Any:
            for name, (group, group_fields, _) in fields.items():
                kwargs[name] = group(**{f.name: kwargs.pop(f.name) for f in group_fields})
            return function(**kwargs)

        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return cast(F, wrapper)

    return decorate


def command(app: typer.Typer, name: str, **groups: type[Any]) -> Callable[[F], F]:
    """`@app.command(name)` of a command that takes option groups (see `with_options`)."""

    def decorate(function: F) -> F:
        return app.command(name)(with_options(**groups)(function))

    return decorate


def fail(message: str) -> typer.Exit:
    """Prints `error: <message>` on stderr; the caller raises the returned exit (status 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def validation_message(
    exc: ValidationError,
    env_prefix: str | None = None,
    options: Mapping[str, str] | None = None,
) -> str:
    """A pydantic error on one line, without pydantic's "Value error, " prefix.

    With the settings' `env_prefix` each field is named by its variable and its option, e.g.
    `DEPIN_PROVIDER_QUEUE / --queue`; `options` names the options that are not `--<field>`.
    Without it, by its location in the model.
    """
    parts = []
    for e in exc.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["loc"] and env_prefix is not None:
            field = str(e["loc"][0])
            option = (options or {}).get(field, "--" + field.replace("_", "-"))
            msg = f"{env_prefix}{field.upper()} / {option}: {msg}"
        elif e["loc"]:
            msg = f"{'.'.join(str(p) for p in e['loc'])}: {msg}"
        parts.append(msg)
    return "; ".join(parts)


@contextmanager
def errors(
    env_prefix: str | None = None, options: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Turns configuration and protocol errors into `error: <message>` and exit status 1
    (`env_prefix` and `options` as in `validation_message`)."""
    try:
        yield
    except ValidationError as exc:
        _trace()
        raise fail(validation_message(exc, env_prefix, options)) from None
    except DepinError as exc:
        _trace()
        raise fail(str(exc)) from None


def _trace() -> None:
    if _debug:
        traceback.print_exc(file=sys.stderr)


def unexpected(exc: BaseException) -> str:
    """The one line an unexpected error prints without --debug."""
    first = (str(exc).strip().splitlines() or [""])[0]
    if len(first) > 240:
        first = first[:240] + "..."
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return (
        f"{what} (unexpected; run the command again as `depin --debug ...` for the traceback, "
        "and report it with that output)"
    )


def emit(data: Mapping[str, Any], as_json: bool, text: str | Iterable[str]) -> None:
    """A command's result: `data` as indented JSON with `--json`, else `text` (or its lines)."""
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for line in [text] if isinstance(text, str) else text:
        typer.echo(line)


def emit_event(data: Mapping[str, Any], as_json: bool, text: str) -> None:
    """An event of a long-running command (started, stopped): one JSON line with `--json`."""
    typer.echo(json.dumps(data) if as_json else text)


def read_password(password_file: Path | None, env: str, *, confirm: bool = False) -> str:
    """A password from `password_file` (its first line), else `$env`, else a hidden prompt
    (only on a terminal: a script must not hang on a prompt it cannot answer)."""
    if password_file is not None:
        try:
            lines = password_file.read_text().splitlines()
        except OSError as exc:
            raise fail(f"cannot read the password file {password_file}: {exc.strerror}") from None
        password = lines[0] if lines else ""
    elif env in os.environ:
        password = os.environ[env]
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    else:
        raise fail(f"no password: pass --password-file or set {env}")
    if not password:
        raise fail("the password is empty; choose a non-empty one")
    return password
