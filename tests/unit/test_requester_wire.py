"""The JSON form of the requester SDK's answers (`depin job ... --json`): each model's
`model_dump(mode="json")`, key order included, written out literally, so a change to what the
CLI prints shows here first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from marketplace.matching.why import Waiting
from marketplace.protocol.client import JobState
from marketplace.requester import (
    AuditRoundStatus,
    Balances,
    JobResult,
    JobStatus,
    JobSummary,
    ParticipantStatus,
)
from marketplace.requester.market import Asks, MarketView, Quote

ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CAROL = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
REQUESTER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
#: Above 2**64 and above a double's exact integers: a JSON number would lose digits.
BIG = 123_456_789_012_345_678_901_234


def _dumped(model: Any, expected: dict[str, Any]) -> None:
    data = model.model_dump(mode="json")
    assert data == expected
    assert list(data) == list(expected), "the keys come in the order --json has always printed"


def test_a_filled_status() -> None:
    status = JobStatus(
        job_id=12,
        state=JobState.AUDITING,
        requester=REQUESTER,
        deadline=1_700_000_000,
        replicas=1,
        units=4,
        max_price_per_unit=BIG,
        clearing_price=10**15,
        escrow=4 * BIG,
        profile="pytorch-cuda-deterministic",
        participants=(
            ParticipantStatus(provider=ALICE, executor=True, committed=True),
            ParticipantStatus(provider=BOB, executor=False, committed=True, round=1),
            ParticipantStatus(provider=CAROL, executor=False, committed=False, round=1),
        ),
        rounds=(AuditRoundStatus(round=1, seats=2, verifiers=(BOB, CAROL)),),
        challenged=True,
        digest="0x" + "ab" * 32,
        results=(ALICE,),
        history=(
            {"block_number": 7, "event": "JobCreated", "state": "open"},
            {"block_number": 9, "event": "ProvidersAssigned", "state": "assigned"},
        ),
        waiting=None,
        failure=None,
    )
    _dumped(
        status,
        {
            "job_id": 12,
            "state": "auditing",
            "terminal": False,
            "result_available": True,
            "requester": REQUESTER,
            "deadline": 1_700_000_000,
            "replicas": 1,
            "units": 4,
            "max_price_per_unit": "123456789012345678901234",
            "clearing_price": "1000000000000000",
            "escrow": "493827156049382715604936",
            "profile": "pytorch-cuda-deterministic",
            "participants": [
                {"provider": ALICE, "executor": True, "committed": True, "round": 0},
                {"provider": BOB, "executor": False, "committed": True, "round": 1},
                {"provider": CAROL, "executor": False, "committed": False, "round": 1},
            ],
            "rounds": [{"round": 1, "seats": 2, "staffed": True, "verifiers": [BOB, CAROL]}],
            "verifiers": [BOB, CAROL],
            "challenged": True,
            "digest": "0x" + "ab" * 32,
            "results": [ALICE],
            "history": [
                {"block_number": 7, "event": "JobCreated", "state": "open"},
                {"block_number": 9, "event": "ProvidersAssigned", "state": "assigned"},
            ],
            "waiting": None,
            "failure": None,
        },
    )
    # In Python the values keep their types: ints for amounts, the JobState member.
    assert status.state is JobState.AUDITING and status.escrow == 4 * BIG
    assert status.model_dump()["max_price_per_unit"] == BIG


def test_an_empty_status() -> None:
    """An open job nobody took, read while the relayer did not answer."""
    status = JobStatus(
        job_id=1,
        state=JobState.OPEN,
        requester=REQUESTER,
        deadline=0,
        replicas=3,
        units=1,
        max_price_per_unit=0,
        clearing_price=0,
        escrow=0,
        profile="#9",
        participants=(),
    )
    _dumped(
        status,
        {
            "job_id": 1,
            "state": "open",
            "terminal": False,
            "result_available": False,
            "requester": REQUESTER,
            "deadline": 0,
            "replicas": 3,
            "units": 1,
            "max_price_per_unit": "0",
            "clearing_price": "0",
            "escrow": "0",
            "profile": "#9",
            "participants": [],
            "rounds": [],
            "verifiers": [],
            "challenged": False,
            "digest": None,
            "results": None,
            "history": None,
            "waiting": None,
            "failure": None,
        },
    )


def test_a_settled_failure_is_terminal_and_an_understaffed_round_says_so() -> None:
    status = JobStatus(
        job_id=5,
        state=JobState.SETTLED,
        requester=REQUESTER,
        deadline=0,
        replicas=1,
        units=1,
        max_price_per_unit=1,
        clearing_price=1,
        escrow=1,
        profile="p",
        participants=(),
        rounds=(AuditRoundStatus(round=2, seats=5, verifiers=(BOB,)),),
        results=(),
        failure="oom",
    )
    data = status.model_dump(mode="json")
    assert (data["state"], data["terminal"], data["result_available"]) == ("settled", True, False)
    assert data["rounds"] == [{"round": 2, "seats": 5, "staffed": False, "verifiers": [BOB]}]
    assert data["failure"] == "oom"


def test_a_verified_result(tmp_path: Path) -> None:
    result = JobResult(
        job_id=3,
        provider=ALICE,
        digest=bytes(range(32)),
        outputs={
            "z": np.zeros((2, 3), dtype=np.float32),
            "a": np.arange(4, dtype=np.int64),
        },
        path=tmp_path / "job-3.safetensors",
        rejected=((BOB, "digest does not match the commitment"),),
    )
    _dumped(
        result,
        {
            "job_id": 3,
            "ok": True,
            "provider": ALICE,
            "digest": "0x" + bytes(range(32)).hex(),
            "failure": None,
            "message": None,
            "outputs": {
                "a": {"dtype": "int64", "shape": [4]},
                "z": {"dtype": "float32", "shape": [2, 3]},
            },
            "path": str(tmp_path / "job-3.safetensors"),
            "rejected": [{"provider": BOB, "reason": "digest does not match the commitment"}],
        },
    )


def test_a_failed_result() -> None:
    result = JobResult(
        job_id=4,
        provider=ALICE,
        digest=b"\x01" * 32,
        outputs={},
        failure="bad_input",
        message="n must be positive",
    )
    assert not result.ok
    _dumped(
        result,
        {
            "job_id": 4,
            "ok": False,
            "provider": ALICE,
            "digest": "0x" + "01" * 32,
            "failure": "bad_input",
            "message": "n must be positive",
            "outputs": {},
            "path": None,
            "rejected": [],
        },
    )


def test_a_listed_job_before_and_after_it_ends() -> None:
    open_job = JobSummary(
        job_id=8,
        state=JobState.OPEN,
        units=2,
        replicas=1,
        max_price_per_unit=BIG,
        escrow=2 * BIG,
        spec_hash="cd" * 32,
    )
    _dumped(
        open_job,
        {
            "job_id": 8,
            "state": "open",
            "units": 2,
            "replicas": 1,
            "max_price_per_unit": "123456789012345678901234",
            "escrow": "246913578024691357802468",
            "spec_hash": "cd" * 32,
            "failure": None,
            "kind": None,
            "cost": None,
        },
    )
    ended = open_job.model_copy(
        update={"state": JobState.SETTLED, "kind": "matmul", "cost": 10**18, "failure": "oom"}
    )
    data = ended.model_dump(mode="json")
    assert (data["state"], data["kind"], data["cost"], data["failure"]) == (
        "settled",
        "matmul",
        "1000000000000000000",
        "oom",
    )


def test_balances() -> None:
    _dumped(
        Balances(address=ALICE, eth=10**18, tokens=BIG, credits=0),
        {
            "address": ALICE,
            "eth": "1000000000000000000",
            "tokens": "123456789012345678901234",
            "credits": "0",
        },
    )


def test_the_answers_are_frozen_and_refuse_unknown_fields() -> None:
    balances = Balances(address=ALICE, eth=1, tokens=2, credits=3)
    with pytest.raises(ValidationError, match="frozen"):
        balances.eth = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        ParticipantStatus(provider=ALICE, executor=True, committed=True, seat=2)  # type: ignore[call-arg]


def test_the_market_and_a_quote() -> None:
    view = MarketView(
        registered=3,
        live=2,
        by_profile=(
            Asks(profile="pytorch-cuda-deterministic", live=2, lowest=1, median=BIG, highest=BIG),
        ),
    )
    _dumped(
        view,
        {
            "registered": 3,
            "live": 2,
            "profiles": [
                {
                    "profile": "pytorch-cuda-deterministic",
                    "live": 2,
                    "lowest": "1",
                    "median": "123456789012345678901234",
                    "highest": "123456789012345678901234",
                }
            ],
        },
    )
    short = Waiting("vram", "1 provider has 24 GiB; lower --min-vram", eligible=1, needed=3)
    quoted = Quote(escrow=3 * BIG, units=1, replicas=3, max_price_per_unit=BIG, waiting=short)
    _dumped(
        quoted,
        {
            "escrow": "370370367037037036703702",
            "units": 1,
            "replicas": 3,
            "max_price_per_unit": "123456789012345678901234",
            "takeable": False,
            "code": "vram",
            "reason": "1 provider has 24 GiB; lower --min-vram",
            "eligible": 1,
        },
    )
    assert quoted.model_copy(update={"waiting": Waiting("matchable", "", 3, 3)}).takeable
