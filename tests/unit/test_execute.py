"""`provider.execute.run_spec`: each kind and each deterministic failure code, with artifacts
from a dict (no I/O)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from marketplace.protocol.results import public_key_hex
from marketplace.protocol.spec import JobSpec
from provider.execute import EMBED_MODEL, JobFailed, parse_sentences, run_spec

PROFILE = "torch-2.13.0/cpu/float32/deterministic"
KEY = public_key_hex(Account.from_key(b"\x01" * 32))


def _spec(
    kind: str, model: str = "", inputs: tuple[str, ...] = (), **parameters: object
) -> JobSpec:
    return JobSpec(
        version=1,
        kind=kind,  # type: ignore[arg-type]
        model=model,
        inputs=inputs,
        parameters=parameters,  # type: ignore[arg-type]
        profile=PROFILE,
        units=1,
        requester_public_key=KEY,
    )


def _fetch(store: dict[str, bytes]):  # type: ignore[no-untyped-def]
    return store.__getitem__


def test_matmul_runs() -> None:
    outputs = run_spec(_spec("matmul", n=4, seed=1), _fetch({}), PROFILE)
    assert outputs["c"].shape == (4, 4)


def test_profile_mismatch_is_a_result() -> None:
    with pytest.raises(JobFailed) as err:
        run_spec(
            _spec("matmul", n=4, seed=1), _fetch({}), "torch-2.13.0/cuda/float32/deterministic"
        )
    assert err.value.code == "profile-mismatch"


def test_embed_model_must_be_the_shipped_one() -> None:
    with pytest.raises(JobFailed) as err:
        run_spec(_spec("embed", "other/model", ("a" * 64,)), _fetch({"a" * 64: b"[]"}), PROFILE)
    assert err.value.code == "model-unsupported"


@pytest.mark.parametrize(
    "data", [b"\xff\xfe", b"{}", b'["ok", 3]', b"not json"], ids=["utf8", "object", "mixed", "text"]
)
def test_embed_input_must_be_a_json_array_of_strings(data: bytes) -> None:
    with pytest.raises(JobFailed) as err:
        parse_sentences(data)
    assert err.value.code == "input-invalid"


def test_embed_inputs_are_concatenated_in_order() -> None:
    store = {
        "a" * 64: json.dumps(["one"]).encode(),
        "b" * 64: json.dumps(["two", "three"]).encode(),
    }
    outputs = run_spec(_spec("embed", EMBED_MODEL, ("a" * 64, "b" * 64)), _fetch(store), PROFILE)
    assert outputs["embeddings"].shape == (3, 384)


def test_torchscript_takes_exactly_one_input() -> None:
    spec = _spec("torchscript", "c" * 64, ("a" * 64, "b" * 64))
    with pytest.raises(JobFailed) as err:
        run_spec(spec, _fetch({}), PROFILE)
    assert err.value.code == "input-invalid"


def test_torchscript_garbage_module_is_input_invalid() -> None:
    spec = _spec("torchscript", "c" * 64, ("a" * 64,))
    store = {"c" * 64: b"not a torchscript archive", "a" * 64: b"not safetensors"}
    with pytest.raises(JobFailed) as err:
        run_spec(spec, _fetch(store), PROFILE)
    assert err.value.code == "input-invalid"


def test_export_takes_exactly_one_input_and_a_program() -> None:
    spec = _spec("export", "c" * 64, ("a" * 64, "b" * 64))
    with pytest.raises(JobFailed) as err:
        run_spec(spec, _fetch({}), PROFILE)
    assert err.value.code == "input-invalid"
    spec = _spec("export", "c" * 64, ("a" * 64,))
    store = {"c" * 64: b"not a .pt2 archive", "a" * 64: b"not safetensors"}
    with pytest.raises(JobFailed, match=r"not a torch\.export program") as err:
        run_spec(spec, _fetch(store), PROFILE)
    assert err.value.code == "input-invalid"
