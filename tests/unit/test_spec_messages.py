"""Job spec error messages word for word, and the JSON nesting guard, so that a requester reads
exactly which field is wrong and how to fix it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from marketplace.protocol.spec import (
    MAX_JSON_DEPTH,
    JobSpec,
    SpecError,
    _describe,
    _nesting_depth,
    _short,
)

PUBLIC_KEY = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798" + (
    "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
)  # the secp256k1 generator point


def matmul(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "version": 1,
        "kind": "matmul",
        "model": "",
        "inputs": [],
        "parameters": {"n": 256, "seed": 42, "iterations": 3},
        "profile": "torch-2.13.0/cpu/float32/deterministic",
        "units": 10,
        "requester_public_key": PUBLIC_KEY,
    }
    return {**spec, **overrides}


def problems(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(SpecError) as caught:
        JobSpec.from_dict(data)
    return caught.value.problems


def json_problems(raw: bytes | str, *, canonical: bool = False) -> tuple[str, ...]:
    with pytest.raises(SpecError) as caught:
        JobSpec.from_json(raw, canonical=canonical)
    return caught.value.problems


def test_the_message_joins_every_problem() -> None:
    error = SpecError(["units: bad", "kind: bad"])
    assert str(error) == "invalid job spec: units: bad; kind: bad"
    assert SpecError("one").problems == ("one",)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (matmul(units=0), "units must be from 1 to 4294967295 (a uint32), got 0"),
        (
            matmul(units=1.0),
            "units: Input should be a valid integer, got 1.0; write an integer from 1 to "
            "4294967295",
        ),
        (
            matmul(extra=1),
            "extra: unknown field; remove it (a spec has version, kind, model, inputs, "
            "parameters, profile, units, requester_public_key)",
        ),
        (
            matmul(kind=1),
            "kind: unknown kind 1; use one of 'embed', 'torchscript', 'matmul', 'export'",
        ),
    ],
)
def test_a_problem_reads_exactly(data: dict[str, Any], expected: str) -> None:
    assert problems(data) == (expected,)


def test_a_missing_field_names_what_to_write() -> None:
    data = matmul()
    del data["units"]
    assert problems(data) == ("units: missing; add it (an integer from 1 to 4294967295)",)


def _error(kind: str, loc: tuple[int | str, ...], msg: str, **extra: Any) -> Any:
    return {"type": kind, "loc": loc, "msg": msg, "input": extra.pop("input", 1), **extra}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            _error("model_type", (), "Input should be an object"),
            "spec: Input should be an object, got 1",
        ),
        (
            _error("string_type", ("inputs", 0), "Input should be a valid string"),
            "inputs.0: Input should be a valid string, got 1; write a list of input artifact "
            "hashes, each 64 lowercase hex characters (a sha256 digest, no 0x prefix)",
        ),
        (
            _error("string_type", ("kind",), "Input should be a valid string"),
            "kind: Input should be a valid string, got 1; write one of 'embed', 'torchscript', "
            "'matmul', 'export'",
        ),
        (
            _error("int_type", ("future",), "Input should be a valid integer"),
            "future: Input should be a valid integer, got 1",
        ),
        (
            _error("missing", ("future",), "Field required"),
            "future: missing; add it (see the spec format)",
        ),
        (_error("value_error", (), "Value error, boom"), "Value error, boom"),
        (
            _error("value_error", (), "Value error, boom", ctx={"error": ValueError("boom")}),
            "boom",
        ),
        (
            _error("tuple_type", ("x",), "Input should be a valid tuple"),
            "x: Input should be a valid list, got 1",
        ),
    ],
)
def test_describe_words_each_kind_of_error(error: Any, expected: str) -> None:
    assert _describe(error) == expected


def test_long_inputs_are_shortened_to_40_characters() -> None:
    assert _short("a" * 38) == repr("a" * 38)  # 40 characters with the quotes: kept
    assert _short("a" * 39) == "'" + "a" * 36 + "..."
    assert len(_short("a" * 1000)) == 40


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[1]", 1),
        ("[][[]]", 2),
        ('{"a": [1, {"b": []}], "c": {}}', 4),
        ('{"a": "[[[[{{{{", "b": []}', 2),
        ('{"a": "x\\"[[[[", "b": []}', 2),
        ('{"a": "x\\\\", "b": [[[]]]}', 4),
        ('"\\\\"[[', 2),
        ('{"a": "]]]]", "b": [[1]]}', 3),
        ("XXX", 0),  # not JSON: only brackets count, whatever else the text holds
        ("[[X[", 3),
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert _nesting_depth(text) == depth


def _nested(depth: int) -> str:
    inner = depth - 1
    return '{"parameters": ' + "[" * inner + "]" * inner + "}"


def test_json_as_deep_as_allowed_reaches_validation_and_one_more_level_does_not() -> None:
    assert MAX_JSON_DEPTH == 8
    allowed = json_problems(_nested(MAX_JSON_DEPTH))
    assert any(p.startswith("parameters: Input should be a valid dictionary") for p in allowed)
    assert json_problems(_nested(MAX_JSON_DEPTH + 1)) == (
        "JSON nested too deeply; parameters are flat",
    )


def test_a_str_with_a_lone_surrogate_is_refused_as_text_not_crashing() -> None:
    assert json_problems('{"a": "\ud800"}') == (
        "the spec is not UTF-8 text (byte 7); save it as UTF-8",
    )


def test_non_canonical_bytes_are_refused_with_the_fix() -> None:
    assert json_problems(json.dumps(matmul()), canonical=True) == (
        "the bytes are not in canonical form (sorted keys, no whitespace, UTF-8 without "
        "escapes); upload JobSpec.canonical_json() instead",
    )


def test_integer_parameters_accept_both_bounds() -> None:
    for n in (1, 8192):
        spec = JobSpec.from_dict(matmul(parameters={"n": n, "seed": 0}))
        assert spec.parameters["n"] == n


def test_a_spec_that_is_not_an_object_or_of_another_version_reads_exactly() -> None:
    with pytest.raises(SpecError) as caught:
        JobSpec.from_dict([1])  # type: ignore[arg-type]
    assert caught.value.problems == ("a spec is a JSON object, got list",)
    assert problems(matmul(version=2)) == (
        "version: 2 is not supported; write version 1 (or upgrade depin-compute to read newer "
        "specs)",
    )


def test_equal_specs_hash_alike_and_different_specs_apart() -> None:
    a, b = JobSpec.from_dict(matmul()), JobSpec.from_dict(matmul(units=11))
    assert hash(a) == hash(JobSpec.from_dict(matmul())) == hash(a.spec_hash())
    assert hash(a) != hash(b)
