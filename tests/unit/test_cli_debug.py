"""`depin --debug`: one line per error by default, the traceback on request."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace.cli import common, main


@pytest.fixture()
def crashing_command() -> Iterator[str]:
    """A command of the real `depin` app that raises an error nobody anticipated."""

    def crash() -> None:
        raise RuntimeError("the disk vanished\nsecond line of detail")

    main.app.command("crash-for-test")(crash)
    try:
        yield "crash-for-test"
    finally:
        main.app.registered_commands = [
            c for c in main.app.registered_commands if c.name != "crash-for-test"
        ]
        common.set_debug(False)


def test_an_unexpected_error_is_one_line_naming_debug(
    crashing_command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["depin", crashing_command])
    with pytest.raises(SystemExit) as exit_:
        main.run()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: RuntimeError: the disk vanished (unexpected; run the command again as "
        "`depin --debug ...` for the traceback, and report it with that output)"
    ]


def test_debug_lets_the_unexpected_error_through_with_its_traceback(
    crashing_command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["depin", "--debug", crashing_command])
    with pytest.raises(RuntimeError, match="the disk vanished"):
        main.run()


def test_an_expected_error_prints_its_traceback_only_with_debug(tmp_path: Path) -> None:
    depin = Path(sys.executable).with_name("depin")
    missing = tmp_path / "nowhere.json"
    command = [str(depin), "wallet", "balance", "--deployment", str(missing)]
    args = ["0x" + "11" * 20]
    plain = subprocess.run(command + args, capture_output=True, text=True, timeout=60)
    debug = subprocess.run(
        [command[0], "--debug", *command[1:], *args], capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == debug.returncode == 1
    assert plain.stderr.startswith("error: ") and "Traceback" not in plain.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1]
    assert str(missing) in plain.stderr
