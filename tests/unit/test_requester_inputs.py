"""Requester input handling: files to sentences, default units, spec building, and the errors
raised before anything is uploaded or paid."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from safetensors.numpy import load_file
from safetensors.numpy import save as st_save

from marketplace.protocol.deployment import DEFAULT_PROFILES
from marketplace.protocol.results import public_key_hex
from marketplace.protocol.spec import JobSpec, SpecError
from marketplace.requester import (
    DEFAULT_PROFILE,
    EMBED_MODEL,
    InputError,
    JobDraft,
    default_units,
    encode_sentences,
    format_tokens,
    parse_parameter,
    prepare,
    read_sentences,
    write_outputs,
)

KEY = public_key_hex(Account.from_key("0x" + "11" * 32))
PRICE = 10**15


def _prepare(draft: JobDraft):  # type: ignore[no-untyped-def]
    return prepare(draft, public_key=KEY, profiles=list(DEFAULT_PROFILES))


# ---------------------------------------------------------------------- sentences


def test_txt_input_is_one_sentence_per_non_empty_line(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("  first one \n\n\r\nsecond, with ünïcode ✓\r\n   \nthird")
    assert read_sentences(path) == ["first one", "second, with ünïcode ✓", "third"]


def test_json_input_is_an_array_of_strings(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(["a", " b ", ""]))
    assert read_sentences(path) == ["a", " b ", ""]  # JSON is taken as written


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("s.json", '{"a": 1}', "JSON array of strings"),
        ("s.json", "[1, 2]", "JSON array of strings"),
        ("s.json", "[oops", "not valid JSON (line 1 column 2"),
        ("s.txt", "\n \n", "holds no sentences"),
        ("s.csv", "a,b", "not '.csv'"),
    ],
)
def test_bad_sentence_files_name_the_fix(
    tmp_path: Path, name: str, content: str, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=None) as info:
        read_sentences(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_non_utf8_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    with pytest.raises(InputError, match=r"not UTF-8 text .* save it as UTF-8"):
        read_sentences(bad)
    with pytest.raises(InputError, match=r"no input file at .*nope\.txt; check the path"):
        read_sentences(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="is a directory"):
        read_sentences(tmp_path)


def test_sentences_encode_as_the_compact_utf8_json_the_runtime_parses() -> None:
    data = encode_sentences(["héllo", 'a "quoted", comma'])
    assert data == '["héllo","a \\"quoted\\", comma"]'.encode()
    assert json.loads(data) == ["héllo", 'a "quoted", comma']


# ---------------------------------------------------------------------- units and parameters


@pytest.mark.parametrize(
    ("kind", "params", "count", "units"),
    [
        ("embed", {}, 7, 7),
        ("embed", {}, 0, 1),
        ("matmul", {"n": 1000, "seed": 1}, 0, 2),  # 2e9 flops = 2 GFLOP
        ("matmul", {"n": 1001, "seed": 1}, 0, 3),  # ceil(2.006)
        ("matmul", {"n": 8, "seed": 1}, 0, 1),  # tiny jobs still cost one unit
        ("matmul", {"n": 1024, "seed": 1, "iterations": 10}, 0, math.ceil(2 * 1024**3 * 10 / 1e9)),
        ("matmul", {"n": "big"}, 0, 1),  # left to the spec check
        ("matmul", {"n": True}, 0, 1),
        ("torchscript", {}, 0, 1),
    ],
)
def test_default_units(kind: str, params: dict, count: int, units: int) -> None:  # type: ignore[type-arg]
    assert default_units(kind, params, count) == units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n=1024", ("n", 1024)),
        ("scale=0.5", ("scale", 0.5)),
        ("flag=true", ("flag", True)),
        ("name=hello world", ("name", "hello world")),
        ("ids=[1,2,3]", ("ids", [1, 2, 3])),
        (" seed = 7", ("seed", 7)),
        ("empty=", ("empty", "")),
    ],
)
def test_parse_parameter(text: str, expected: tuple[str, object]) -> None:
    assert parse_parameter(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [("n", "not name=value"), ("=3", "not name=value"), ("o={}", "object"), ("l=[[1]]", "flat")],
)
def test_parse_parameter_errors(text: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        parse_parameter(text)


# ---------------------------------------------------------------------- spec building


def test_matmul_spec_and_request() -> None:
    job = _prepare(
        JobDraft("matmul", PRICE, parameters={"n": 2048, "seed": 3}, replicas=3, exec_window=90)
    )
    spec = job.spec
    assert spec == JobSpec.from_json(job.spec_bytes, canonical=True)
    assert (spec.kind, spec.model, spec.inputs, spec.profile) == ("matmul", "", (), DEFAULT_PROFILE)
    assert spec.units == math.ceil(2 * 2048**3 / 1e9) == 18
    assert spec.requester_public_key == KEY
    assert job.artifacts == {} and job.referenced == ()
    r = job.request
    assert r.spec_hash == spec.spec_hash() and len(r.spec_hash) == 32
    assert (r.units, r.max_price_per_unit, r.replicas, r.exec_window) == (18, PRICE, 3, 90)
    assert r.profile == 0


def test_profile_id_is_the_index_in_the_deployment() -> None:
    cuda = DEFAULT_PROFILES[1]
    job = _prepare(JobDraft("matmul", PRICE, parameters={"n": 4, "seed": 0}, profile=cuda))
    assert job.request.profile == 1 and job.spec.profile == cuda
    with pytest.raises(InputError, match="not defined by this deployment; use one of"):
        _prepare(JobDraft("matmul", PRICE, parameters={"n": 4, "seed": 0}, profile="tpu/v5"))


def test_embed_spec_from_files_and_sentences(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.json").write_text('["three"]')
    job = _prepare(JobDraft("embed", PRICE, inputs=(tmp_path / "a.txt", tmp_path / "b.json")))
    first, second = encode_sentences(["one", "two"]), encode_sentences(["three"])
    from hashlib import sha256

    assert job.spec.inputs == (sha256(first).hexdigest(), sha256(second).hexdigest())
    assert dict(job.artifacts) == {
        sha256(first).hexdigest(): first,
        sha256(second).hexdigest(): second,
    }
    assert job.spec.units == 3 and job.spec.model == EMBED_MODEL
    assert "batch_size" not in job.spec.parameters  # the provider's default, 32

    direct = _prepare(JobDraft("embed", PRICE, sentences=("x", "y"), parameters={"batch_size": 8}))
    assert direct.spec.units == 2 and direct.spec.parameters == {"batch_size": 8}
    with pytest.raises(InputError, match="not both"):
        _prepare(JobDraft("embed", PRICE, sentences=("x",), inputs=(tmp_path / "a.txt",)))
    with pytest.raises(InputError, match="embed needs sentences"):
        _prepare(JobDraft("embed", PRICE))


def _linear_module(path: Path, features: int = 3) -> Path:
    """A traced nn.Linear(features, 2): its forward takes one tensor named `input`."""
    import torch

    traced = torch.jit.trace(torch.nn.Linear(features, 2), torch.zeros(1, features))
    torch.jit.save(traced, str(path))  # type: ignore[no-untyped-call]
    return path


def test_torchscript_uploads_the_module_and_checks_the_input(tmp_path: Path) -> None:
    module = _linear_module(tmp_path / "m.pt")
    tensors = tmp_path / "x.safetensors"
    tensors.write_bytes(st_save({"input": np.ones((2, 3), dtype=np.float32)}))
    job = _prepare(JobDraft("torchscript", PRICE, model=module, inputs=(tensors,)))
    from hashlib import sha256

    assert job.spec.model == sha256(module.read_bytes()).hexdigest()
    assert set(job.artifacts) == {job.spec.model, *job.spec.inputs}
    assert job.spec.units == 1

    by_hash = _prepare(JobDraft("torchscript", PRICE, model="ab" * 32, inputs=(tensors,)))
    assert by_hash.referenced == ("ab" * 32,) and by_hash.spec.model == "ab" * 32

    not_zip = tmp_path / "m.txt"
    not_zip.write_text("def forward")
    with pytest.raises(InputError, match="not a TorchScript module"):
        _prepare(JobDraft("torchscript", PRICE, model=not_zip, inputs=(tensors,)))
    junk = tmp_path / "y.safetensors"
    junk.write_bytes(b"\xff" * 16)
    with pytest.raises(InputError, match=r"not a safetensors file .*header length"):
        _prepare(JobDraft("torchscript", PRICE, model=module, inputs=(junk,)))
    with pytest.raises(InputError, match="exactly one input"):
        _prepare(JobDraft("torchscript", PRICE, model=module, inputs=(tensors, tensors)))
    with pytest.raises(InputError, match="torchscript needs a model"):
        _prepare(JobDraft("torchscript", PRICE, inputs=(tensors,)))


def test_a_torchscript_job_that_cannot_run_on_its_input_is_refused_before_paying(
    tmp_path: Path,
) -> None:
    module = _linear_module(tmp_path / "m.pt")
    wrong_shape = tmp_path / "wide.safetensors"
    wrong_shape.write_bytes(st_save({"input": np.ones((2, 7), dtype=np.float32)}))
    with pytest.raises(InputError, match=r"input \(a and b must have same reduction dim, but"):
        _prepare(JobDraft("torchscript", PRICE, model=module, inputs=(wrong_shape,)))
    wrong_name = tmp_path / "named.safetensors"
    wrong_name.write_bytes(st_save({"x": np.ones((2, 3), dtype=np.float32)}))
    with pytest.raises(InputError, match="missing value for argument 'input'"):
        _prepare(JobDraft("torchscript", PRICE, model=module, inputs=(wrong_name,)))
    zip_only = tmp_path / "z.pt"
    zip_only.write_bytes(b"PK\x03\x04" + b"\0" * 60)
    good = tmp_path / "x.safetensors"
    good.write_bytes(st_save({"input": np.ones((2, 3), dtype=np.float32)}))
    with pytest.raises(InputError, match="is not a loadable TorchScript module"):
        _prepare(JobDraft("torchscript", PRICE, model=zip_only, inputs=(good,)))


def test_the_dry_run_runs_no_data_and_steps_aside_when_values_decide(tmp_path: Path) -> None:
    import torch

    from marketplace.requester.dryrun import dry_run_torchscript

    module = _linear_module(tmp_path / "m.pt").read_bytes()
    ran = dry_run_torchscript(module, st_save({"input": np.ones((5, 3), dtype=np.float32)}))
    assert ran.ran and ran.outputs == {"output": (5, 2)}

    class ValueBranch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool(x.sum() > 0):
                return x
            return -x

    path = tmp_path / "branch.pt"
    torch.jit.save(torch.jit.script(ValueBranch()), str(path))  # type: ignore[no-untyped-call]
    unsure = dry_run_torchscript(path.read_bytes(), st_save({"x": np.ones(3, np.float32)}))
    assert not unsure.ran  # inconclusive: the job goes out as it is
    assert (
        unsure.note == "not tried on meta tensors: Tensor.item() cannot be called on meta tensors"
    )


@pytest.mark.parametrize(
    ("draft", "error", "needle"),
    [
        (JobDraft("train", PRICE), InputError, "unknown kind 'train'; use one of embed"),
        (JobDraft("matmul", PRICE, parameters={"n": 4}), SpecError, "seed"),
        (JobDraft("matmul", PRICE, parameters={"n": 0, "seed": 1}), SpecError, "parameters.n"),
        (JobDraft("matmul", PRICE, parameters={"n": 4, "seed": 1}, units=0), SpecError, "units"),
        (JobDraft("matmul", PRICE, inputs=(Path("x"),)), InputError, "matmul takes no inputs"),
        (JobDraft("matmul", PRICE, model="m"), InputError, "matmul takes no model"),
        (
            JobDraft("embed", PRICE, sentences=("a",), model="bert-base-uncased"),
            InputError,
            "embed runs 'sentence-transformers/all-MiniLM-L6-v2' only, not 'bert-base-uncased'",
        ),
        (JobDraft("matmul", 0, parameters={"n": 4, "seed": 1}), InputError, "max price"),
        (
            JobDraft("matmul", PRICE, parameters={"n": 4, "seed": 1}, replicas=6),
            InputError,
            "replicas must be 1, 3 or 5",
        ),
        (
            JobDraft("matmul", PRICE, parameters={"n": 4, "seed": 1}, replicas=2),
            InputError,
            "got 2; use 1 for an audited single run or 3 for independent replicas",
        ),
        (
            JobDraft("matmul", PRICE, parameters={"n": 4, "seed": 1}, replicas=4),
            InputError,
            "got 4; use 1 for an audited single run or 3 for independent replicas",
        ),
        (
            JobDraft("matmul", PRICE, parameters={"n": 4, "seed": 1}, accept_window=0),
            InputError,
            "accept window",
        ),
        (
            JobDraft("embed", PRICE, sentences=("a",), parameters={"batch_size": 0}),
            SpecError,
            "batch_size",
        ),
    ],
)
def test_bad_drafts_raise_before_any_io(draft: JobDraft, error: type, needle: str) -> None:
    with pytest.raises(error, match=None) as info:
        _prepare(draft)
    assert needle in str(info.value)


def test_missing_input_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no input file at .*gone.txt"):
        _prepare(JobDraft("embed", PRICE, inputs=(tmp_path / "gone.txt",)))


# ---------------------------------------------------------------------- outputs


def test_write_outputs_formats(tmp_path: Path) -> None:
    outputs = {"c": np.arange(6, dtype=np.float32).reshape(2, 3)}
    st = write_outputs(outputs, tmp_path, job_id=9, metadata={"provider": "0xabc"})
    assert st == tmp_path / "job-9.safetensors"
    np.testing.assert_array_equal(load_file(st)["c"], outputs["c"])
    npy = write_outputs(outputs, tmp_path / "c.npy", job_id=9)
    np.testing.assert_array_equal(np.load(npy), outputs["c"])
    two = {"a": np.zeros(1, np.float32), "b": np.ones(1, np.float32)}
    with pytest.raises(InputError, match=r"has 2 outputs .* write a .safetensors file instead"):
        write_outputs(two, tmp_path / "x.npy", job_id=9)
    assert not (tmp_path / "x.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy", "job-9.safetensors"]


def test_format_tokens() -> None:
    assert format_tokens(0) == "0"
    assert format_tokens(10**18) == "1"
    assert format_tokens(15 * 10**17) == "1.5"
    assert format_tokens(1) == "0.000000000000000001"
    assert format_tokens(-25 * 10**16) == "-0.25"


def _linear_program(path: Path, features: int = 3) -> Path:
    """nn.Linear(features, 2) exported with a dynamic batch: it takes one tensor named `input`."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        torch.nn.Linear(features, 2), (torch.zeros(2, features),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, str(path))
    return path


def test_an_export_job_is_checked_against_the_program_before_paying(tmp_path: Path) -> None:
    program = _linear_program(tmp_path / "m.pt2")
    good = tmp_path / "x.safetensors"
    good.write_bytes(st_save({"input": np.ones((5, 3), dtype=np.float32)}))
    job = _prepare(JobDraft("export", PRICE, model=program, inputs=(good,)))
    assert job.spec.kind == "export" and job.spec.units == 1
    assert set(job.artifacts) == {job.spec.model, *job.spec.inputs}

    fix = r"write a safetensors file of exactly input: float32\[\*, 3\]"
    cases: dict[str, tuple[dict[str, np.ndarray[Any, Any]], str]] = {
        "named": ({"x": np.ones((2, 3), dtype=np.float32)}, r"missing input tensors \['input'\]"),
        "double": ({"input": np.ones((2, 3))}, "'input' is float64, the program takes float32"),
        "wide": (
            {"input": np.ones((2, 7), dtype=np.float32)},
            r"'input' has shape \[2, 7\], the program takes \[\*, 3\]",
        ),
    }
    for name, (tensors, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(st_save(tensors))
        with pytest.raises(InputError, match=f"{message}.*{fix}"):
            _prepare(JobDraft("export", PRICE, model=program, inputs=(path,)))

    torchscript = _linear_module(tmp_path / "m.pt")
    with pytest.raises(InputError, match=r"is not a torch\.export program .*torch\.export\.save"):
        _prepare(JobDraft("export", PRICE, model=torchscript, inputs=(good,)))
    with pytest.raises(InputError, match=r"export needs a model: the torch\.export program file"):
        _prepare(JobDraft("export", PRICE, inputs=(good,)))
