"""The job spec: canonical bytes, hashing and every validation message."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import coincurve
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.protocol.errors import DepinError
from marketplace.protocol.spec import MAX_SPEC_BYTES, JobSpec, SpecError

_KEY = coincurve.PrivateKey(bytes(31) + b"\x07").public_key
PUBLIC_KEY = _KEY.format(compressed=False)[1:].hex()
COMPRESSED_KEY = _KEY.format(compressed=True).hex()
INPUT = hashlib.sha256(b"input").hexdigest()
MODEL = hashlib.sha256(b"model").hexdigest()
PROFILE = "torch-2.13.0/cpu/float32/deterministic"


def matmul(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "version": 1,
        "kind": "matmul",
        "model": "",
        "inputs": [],
        "parameters": {"n": 256, "seed": 42, "iterations": 3},
        "profile": PROFILE,
        "units": 10,
        "requester_public_key": PUBLIC_KEY,
    }
    spec.update(overrides)
    return spec


def embed(**overrides: Any) -> dict[str, Any]:
    base = {
        "kind": "embed",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "inputs": [INPUT],
        "parameters": {"batch_size": 32},
    }
    return matmul(**{**base, **overrides})


def torchscript(**overrides: Any) -> dict[str, Any]:
    base = {"kind": "torchscript", "model": MODEL, "inputs": [INPUT, INPUT], "parameters": {}}
    return matmul(**{**base, **overrides})


def exported(**overrides: Any) -> dict[str, Any]:
    base = {"kind": "export", "model": MODEL, "inputs": [INPUT], "parameters": {}}
    return matmul(**{**base, **overrides})


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        JobSpec.from_dict(data)
    return str(caught.value)


# ------------------------------------------------------------------ canonical form and hash


def test_fixed_spec_hash_matches_an_independent_computation() -> None:
    data = embed()
    expected_bytes = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    spec = JobSpec.from_dict(data)

    assert spec.canonical_json() == expected_bytes
    assert spec.spec_hash() == hashlib.sha256(expected_bytes).digest()
    # Pinned: a change to the canonical form changes every spec hash on-chain.
    assert spec.spec_hash().hex() == (
        "7f161d0eee70590768286ae55bb6553cfb0131cfadeb31322724173284682e43"
    )


def test_canonical_json_has_sorted_keys_no_whitespace_and_raw_utf8() -> None:
    spec = JobSpec.from_dict(matmul(parameters={"n": 2, "seed": 1, "label": "größe ✓"}))
    raw = spec.canonical_json()

    assert raw.startswith(b'{"inputs":[],"kind":"matmul","model":"","parameters":{"label":')
    assert b" " not in raw.replace("größe ✓".encode(), b"")
    assert "größe ✓".encode() in raw
    assert list(json.loads(raw)) == sorted(json.loads(raw))


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_extra_parameters = st.dictionaries(
    st.text(min_size=1, max_size=6).filter(lambda k: k not in {"n", "seed", "iterations"}),
    _scalars | st.lists(_scalars, max_size=4),
    max_size=6,
)


@given(extra=_extra_parameters, order=st.randoms(use_true_random=False))
def test_canonical_bytes_do_not_depend_on_insertion_order(
    extra: dict[str, Any], order: Any
) -> None:
    parameters = {"n": 64, "seed": 9, **extra}
    data = matmul(parameters=parameters)

    def shuffled(d: dict[str, Any]) -> dict[str, Any]:
        keys = list(d)
        order.shuffle(keys)
        return {k: d[k] for k in keys}

    reordered = shuffled({**data, "parameters": shuffled(parameters)})
    a, b = JobSpec.from_dict(data), JobSpec.from_dict(reordered)

    assert a.canonical_json() == b.canonical_json()
    assert a.spec_hash() == b.spec_hash()
    assert a == b and hash(a) == hash(b)


@given(extra=_extra_parameters)
def test_round_trip_through_canonical_json(extra: dict[str, Any]) -> None:
    spec = JobSpec.from_dict(matmul(parameters={"n": 8, "seed": 0, **extra}))
    raw = spec.canonical_json()

    again = JobSpec.from_json(raw, canonical=True)

    assert again == spec
    assert again.canonical_json() == raw
    assert hashlib.sha256(raw).digest() == spec.spec_hash()


@pytest.mark.parametrize("build", [matmul, embed, torchscript, exported])
def test_each_kind_round_trips_from_pretty_json(build: Any) -> None:
    data = build()
    pretty = json.dumps(data, indent=2)

    spec = JobSpec.from_json(pretty)

    assert spec.model_dump(mode="json") == data
    assert spec.canonical_json() != pretty.encode()


def test_compressed_public_key_is_accepted() -> None:
    assert JobSpec.from_dict(matmul(requester_public_key=COMPRESSED_KEY)).requester_public_key


def test_float_parameters_round_trip_exactly() -> None:
    values = [0.1, -0.0, 1e300, 5e-324, 1.0]
    spec = JobSpec.from_dict(matmul(parameters={"n": 1, "seed": 1, "f": values}))

    assert json.loads(spec.canonical_json())["parameters"]["f"] == values
    assert JobSpec.from_json(spec.canonical_json()) == spec


def test_spec_error_is_a_depin_error_and_a_value_error() -> None:
    assert issubclass(SpecError, DepinError)
    assert issubclass(SpecError, ValueError)


# ------------------------------------------------------------------ validation messages


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (matmul(kind="train"), "unknown kind 'train'; use one of 'embed', 'torchscript', 'matmul'"),
        (matmul(version=2), "version: 2 is not supported; write version 1"),
        (matmul(version="1"), "version: Input should be a valid integer"),
        (matmul(units=0), "units must be from 1 to 4294967295"),
        (matmul(units=2**32), "units must be from 1 to 4294967295"),
        (matmul(units=1.0), "units: Input should be a valid integer, got 1.0"),
        (matmul(units=True), "units: Input should be a valid integer, got True"),
        (matmul(extra=1), "extra: unknown field; remove it"),
        (embed(inputs=["AB" * 32]), "inputs[0] must be 64 lowercase hex characters"),
        (embed(inputs=[INPUT, "0x" + INPUT[2:]]), "inputs[1] must be 64 lowercase hex characters"),
        (embed(inputs=[INPUT[:-1]]), "inputs[0] must be 64 lowercase hex characters"),
        (embed(inputs=INPUT), "inputs: Input should be a valid list"),
        (embed(inputs=[]), "embed needs at least one input"),
        (embed(model=" "), "embed needs model"),
        (embed(parameters={"batch_size": 0}), "parameters.batch_size of embed jobs must be"),
        (torchscript(model="model.pt"), "torchscript needs model, the TorchScript artifact's hash"),
        (torchscript(model=MODEL.upper()), "64 lowercase hex characters"),
        (torchscript(inputs=[]), "torchscript needs at least one input"),
        (exported(model="model.pt2"), "export needs model, the torch.export program (.pt2)"),
        (exported(inputs=[]), "export needs at least one input: the hash of a safetensors"),
        (matmul(parameters={"seed": 1}), "matmul needs parameters.n, an integer from 1 to 8192"),
        (matmul(parameters={"n": 4}), "matmul needs parameters.seed"),
        (matmul(parameters={"n": 8193, "seed": 1}), "parameters.n of matmul jobs must be an"),
        (matmul(parameters={"n": 0, "seed": 1}), "integer from 1 to 8192, got 0"),
        (matmul(parameters={"n": 4.0, "seed": 1}), "integer from 1 to 8192, got 4.0"),
        (matmul(parameters={"n": True, "seed": 1}), "integer from 1 to 8192, got True"),
        (matmul(parameters={"n": 4, "seed": -1}), "parameters.seed of matmul jobs"),
        (matmul(parameters={"n": 4, "seed": "7"}), "parameters.seed of matmul jobs"),
        (matmul(parameters={"n": 4, "seed": 1, "iterations": 0}), "parameters.iterations"),
        (matmul(inputs=[INPUT]), "matmul takes no inputs"),
        (matmul(model="resnet"), 'matmul takes no model; set model to ""'),
        (
            matmul(parameters={"n": 4, "seed": 1, "x": math.inf}),
            "parameters.x holds inf; JSON has no NaN or infinity, use a finite number",
        ),
        (
            matmul(parameters={"n": 4, "seed": 1, "x": [1.0, math.nan]}),
            "parameters.x holds nan",
        ),
        (matmul(parameters={"n": 4, "seed": 1, "x": {"y": 1}}), "nested objects and lists"),
        (matmul(parameters={"n": 4, "seed": 1, "x": [[1]]}), "nested objects and lists"),
        (matmul(parameters={"n": 4, "seed": 1, "": 1}), "parameter names must be 1 to 64"),
        (matmul(parameters=[1]), "parameters: Input should be a valid dictionary"),
        (matmul(profile=""), "profile must be 1 to 128 printable ASCII characters"),
        (matmul(profile="torch 2"), "profile must be 1 to 128 printable ASCII characters"),
        (matmul(requester_public_key="0x" + PUBLIC_KEY), "got 130 characters with a 0x prefix"),
        (matmul(requester_public_key=PUBLIC_KEY.upper()), "requester_public_key must be"),
        (matmul(requester_public_key=PUBLIC_KEY[:-2]), "128 characters (64-byte uncompressed"),
        (matmul(requester_public_key="00" * 64), "is not a point on secp256k1"),
        (matmul(requester_public_key="04" + "00" * 32), "is not a point on secp256k1"),
        (
            matmul(parameters={"n": 4, "seed": 1, "s": "\ud800"}),
            "strings must be valid Unicode text",
        ),
    ],
)
def test_invalid_field_is_named_with_its_fix(data: dict[str, Any], expected: str) -> None:
    message = problem(data)

    assert message.startswith("invalid job spec: ")
    assert expected in message


@pytest.mark.parametrize(
    "field",
    [
        "version",
        "kind",
        "model",
        "inputs",
        "parameters",
        "profile",
        "units",
        "requester_public_key",
    ],
)
def test_missing_field_is_named(field: str) -> None:
    data = matmul()
    del data[field]

    assert f"{field}: missing; add it (" in problem(data)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as error:
        JobSpec.from_dict(matmul(units=0, profile="", extra=1))

    assert len(error.value.problems) == 3


def test_from_json_rejects_oversized_input() -> None:
    raw = json.dumps(matmul()).encode() + b" " * MAX_SPEC_BYTES

    with pytest.raises(SpecError, match=r"above the 65536-byte limit; move large data"):
        JobSpec.from_json(raw)


def test_canonical_form_above_the_limit_is_rejected() -> None:
    big = matmul(parameters={"n": 1, "seed": 1, "blob": "x" * MAX_SPEC_BYTES})

    assert "above the 65536-byte limit" in problem(big)


def test_spec_just_under_the_limit_is_accepted() -> None:
    size = len(JobSpec.from_dict(matmul(parameters={"n": 1, "seed": 1, "b": ""})).canonical_json())
    spec = JobSpec.from_dict(matmul(parameters={"n": 1, "seed": 1, "b": "x" * (65536 - size)}))

    assert len(spec.canonical_json()) == MAX_SPEC_BYTES
    assert JobSpec.from_json(spec.canonical_json(), canonical=True) == spec


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"version":1,"version":1}', "key 'version' appears twice in one object; keep one"),
        (b"[1, 2]", "a spec is a JSON object, got a JSON list"),
        (b'{"units": NaN}', "NaN is not JSON; use a finite number"),
        (b'{"units": -Infinity}', "-Infinity is not JSON"),
        (b"\xff\xfe{}", "not UTF-8 text (byte 0); save it as UTF-8"),
        (b'{"kind": ', "not valid JSON at line 1 column 10"),
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    ],
)
def test_from_json_rejects_unparseable_input(raw: bytes, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        JobSpec.from_json(raw)

    assert expected in str(caught.value)


def test_json_infinity_in_parameters_is_rejected() -> None:
    raw = json.dumps(matmul()).replace('"iterations": 3', '"iterations": 3, "x": Infinity')

    with pytest.raises(SpecError, match="Infinity is not JSON"):
        JobSpec.from_json(raw)


def test_canonical_flag_rejects_non_canonical_bytes() -> None:
    with pytest.raises(SpecError, match=r"not in canonical form.*JobSpec\.canonical_json"):
        JobSpec.from_json(json.dumps(matmul()), canonical=True)
    escaped = json.dumps(matmul(parameters={"n": 1, "seed": 1, "s": "é"}), sort_keys=True)
    with pytest.raises(SpecError, match="not in canonical form"):
        JobSpec.from_json(escaped.replace(", ", ",").replace(": ", ":"), canonical=True)


def test_the_model_is_frozen() -> None:
    spec = JobSpec.from_dict(matmul())

    with pytest.raises(ValueError, match="frozen"):
        spec.units = 3  # type: ignore[misc]
