"""`provider.behaviors`: the decisions each behaviour makes for the agent (the test aids' cheating
itself is shown end to end in tests/provider/test_slashing.py)."""

from __future__ import annotations

from typing import get_args

import pytest

from provider.behaviors import Copycat, Honest, Lazy, NoShow, Start, made_up_digest, strategy_for
from provider.ledger import DutyStatus
from provider.settings import Behavior


@pytest.mark.parametrize("behavior", get_args(Behavior))
def test_every_setting_has_its_strategy(behavior: Behavior) -> None:
    assert strategy_for(behavior).name == behavior


def test_honest_runs_every_duty_and_redoes_what_a_rollback_undid() -> None:
    honest = strategy_for("honest")
    assert isinstance(honest, Honest)
    for replicas, verifier in ((1, False), (3, False), (1, True)):
        start = honest.start(4, replicas=replicas, verifier=verifier)
        assert start == Start(DutyStatus.QUEUED) and start.runs
    assert honest.restart() is DutyStatus.QUEUED
    assert honest.revives_skipped


def test_lazy_commits_a_made_up_digest_without_a_run() -> None:
    lazy = strategy_for("lazy")
    assert isinstance(lazy, Lazy)
    start = lazy.start(7, replicas=3, verifier=True)
    # The value the lazy provider has always committed for job 7.
    assert start.digest == "0x0e4a60092c9ef4aad31a3d26f872cb4e60586a932a44c7004a1b8e5e8f511b4d"
    assert start.status is DutyStatus.COMPUTED and not start.runs
    assert lazy.restart() is None and not lazy.revives_skipped


def test_copycat_copies_unless_it_is_the_only_executor() -> None:
    copycat = strategy_for("copycat")
    assert isinstance(copycat, Copycat)
    assert copycat.start(5, replicas=2, verifier=False) == Start(DutyStatus.COPYING)
    assert copycat.start(5, replicas=1, verifier=True) == Start(DutyStatus.COPYING)
    alone = copycat.start(5, replicas=1, verifier=False)
    assert alone == Start(DutyStatus.COMPUTED, digest=made_up_digest(5))
    assert copycat.restart() is DutyStatus.COPYING and not copycat.revives_skipped


def test_no_show_takes_the_seat_and_never_commits() -> None:
    no_show = strategy_for("no-show")
    assert isinstance(no_show, NoShow)
    start = no_show.start(2, replicas=1, verifier=False)
    assert start.status is DutyStatus.IGNORED and start.digest is None and not start.runs
    assert start.note == "no-show behaviour: never commits"
    assert no_show.restart() is None and not no_show.revives_skipped


def test_made_up_digests_differ_per_job() -> None:
    assert made_up_digest(1) != made_up_digest(2)
    assert len(made_up_digest(1)) == 66 and made_up_digest(1).startswith("0x")
