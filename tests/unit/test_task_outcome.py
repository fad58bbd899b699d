"""`provider.worker.TaskOutcome`: what a worker returns and the agent reads back. The JSON object
Celery stores is the one earlier workers wrote, so results left in Redis across an upgrade (and
tools that read the backend, such as bench/) keep reading the same keys."""

from __future__ import annotations

from typing import Any

import pytest
from kombu.utils.json import dumps, loads

from provider.execute import Execution
from provider.worker import OutcomeStatus, TaskOutcome, UnreadableOutcome

DIGEST = "0x" + "5a" * 32

#: Results exactly as workers before TaskOutcome stored them, one per status.
OLD_RESULTS: list[dict[str, Any]] = [
    {
        "status": "done",
        "worker": "gpu-7",
        "job_id": 12,
        "digest": DIGEST,
        "artifact": "ab" * 32,
        "failure": "",
        "seconds": 1.25,
    },
    {"status": "skipped", "reason": "already committed"},
    {
        "status": "abandoned",
        "reason": "job 3: chain time 990 + 15 s margin passes the deadline 1000",
        "deadline": 1000,
    },
    {
        "status": "abandoned",
        "reason": "4 runs started and never finished (worker crashes), above "
        "DEPIN_PROVIDER_MAX_DELIVERIES (3)",
        "deadline": None,
    },
    {"status": "rejected", "reason": "malformed task request: ..."},
]


@pytest.mark.parametrize("old", OLD_RESULTS, ids=lambda r: str(r["status"]))
def test_results_stored_before_the_type_are_read_and_written_back_the_same(
    old: dict[str, Any],
) -> None:
    outcome = TaskOutcome.from_json(old)
    assert outcome.status == old["status"] and outcome.reason == old.get("reason", "")
    assert outcome.to_json() == old
    assert list(outcome.to_json()) == list(old)  # same keys, same order


def test_a_done_outcome_carries_the_execution() -> None:
    execution = Execution(
        job_id=9, digest=bytes.fromhex("5a" * 32), artifact="", failure="x", seconds=0.5
    )
    outcome = TaskOutcome.done(execution, "host-1")
    assert outcome.status is OutcomeStatus.DONE
    assert (outcome.job_id, outcome.digest, outcome.artifact, outcome.failure) == (
        9,
        DIGEST,
        "",
        "x",
    )
    assert outcome.worker == "host-1" and outcome.seconds == 0.5
    # Through Celery's JSON serialiser and back, as the result backend carries it.
    carried = loads(dumps(outcome.to_json()))  # type: ignore[no-untyped-call]
    assert TaskOutcome.from_json(carried) == outcome


def test_abandoned_keeps_its_deadline_and_an_unknown_key_is_ignored() -> None:
    outcome = TaskOutcome(status=OutcomeStatus.ABANDONED, reason="late", deadline=77)
    assert outcome.to_json() == {"status": "abandoned", "reason": "late", "deadline": 77}
    later = {**outcome.to_json(), "added_by_a_newer_worker": 1}
    assert TaskOutcome.from_json(later) == outcome


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "not a JSON object but NoneType"),
        ("done", "not a JSON object but str"),
        ({"status": "finished", "reason": "x"}, "status"),
        ({"status": "done", "job_id": 1}, "needs its job_id and digest"),
        ({"status": "done", "job_id": 1, "digest": "0x12"}, "digest"),
        ({"status": "skipped", "reason": 5}, "reason"),
    ],
)
def test_a_value_no_worker_writes_is_refused_with_what_is_wrong(
    value: object, problem: str
) -> None:
    with pytest.raises(UnreadableOutcome, match=problem) as caught:
        TaskOutcome.from_json(value)
    assert "not written by a depin worker" in str(caught.value)
    assert isinstance(caught.value, ValueError)
