"""The `export` kind on real torch.export programs: outputs, determinism across runs and thread
counts, and the errors a requester sees for a wrong artifact or wrong inputs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from marketplace.protocol.digest import digest_hex
from provider.runtime import RuntimeJobError
from provider.runtime.device import profile_name
from provider.runtime.export import export, load_program, signature

PROFILE = profile_name(torch.device("cpu"))
BATCH = torch.export.Dim("batch", min=1, max=4096)


class Net(torch.nn.Module):
    """Convolution, normalisation, attention-style softmax, a matmul and a whole-tensor sum:
    the ops whose CPU kernels split work across threads."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv1d(4, 8, 3, padding=1)
        self.norm = torch.nn.LayerNorm(16)
        self.head = torch.nn.Linear(8 * 16, 10)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.norm(torch.relu(self.conv(x)))
        attn = torch.softmax(h @ h.transpose(1, 2) * scale, dim=-1)
        logits = self.head((attn @ h).flatten(1))
        return {"logits": logits, "total": logits.sum() + x.mean()}


class Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, x.to(torch.bfloat16)


def program_bytes(module: torch.nn.Module, example: tuple[Any, ...], dynamic: Any = None) -> bytes:
    program = torch.export.export(module.eval(), example, dynamic_shapes=dynamic)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def st(**tensors: torch.Tensor) -> bytes:
    return bytes(safetensors.torch.save(tensors))


@pytest.fixture(scope="module")
def net() -> bytes:
    example = (torch.randn(2, 4, 16), torch.tensor(0.25))
    return program_bytes(Net(), example, {"x": {0: BATCH}, "scale": None})


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    return {"x": torch.randn(64, 4, 16, generator=gen), "scale": torch.tensor(0.25)}


@pytest.fixture()
def threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_outputs_are_the_programs_and_keep_their_names(
    net: bytes, batch: dict[str, torch.Tensor]
) -> None:
    out = export(net, st(**batch))
    assert sorted(out) == ["logits", "total"]
    assert out["logits"].shape == (64, 10) and out["logits"].dtype == np.float32
    with torch.inference_mode():
        direct = torch.export.load(io.BytesIO(net)).module()(batch["x"], batch["scale"])
    np.testing.assert_allclose(out["logits"], direct["logits"].numpy(), rtol=1e-5, atol=1e-6)


def test_two_runs_are_bit_exact(net: bytes, batch: dict[str, torch.Tensor]) -> None:
    data = st(**batch)
    assert digest_hex(PROFILE, export(net, data)) == digest_hex(PROFILE, export(net, data))


def test_the_digest_does_not_depend_on_the_thread_count(
    net: bytes, batch: dict[str, torch.Tensor], threads: None
) -> None:
    data = st(**batch)
    torch.set_num_threads(1)
    one = digest_hex(PROFILE, export(net, data))
    torch.set_num_threads(2)
    two = digest_hex(PROFILE, export(net, data))
    assert one == two
    assert torch.get_num_threads() == 2  # the kind restores the worker's setting


def test_rows_do_not_depend_on_the_batch_they_run_in(
    net: bytes, batch: dict[str, torch.Tensor]
) -> None:
    # What sharding along dimension 0 relies on: a row's logits are the same bits whether it
    # runs in the whole batch or in a shard of it.
    whole = export(net, st(**batch))["logits"]
    halves = [
        export(net, st(x=batch["x"][i : i + 32].clone(), scale=batch["scale"]))["logits"]
        for i in (0, 32)
    ]
    assert np.array_equal(whole, np.concatenate(halves))


def test_tuples_become_numbered_outputs_and_bfloat16_widens() -> None:
    program = program_bytes(Pair(), (torch.ones(3),))
    out = export(program, st(x=torch.arange(3, dtype=torch.float32)))
    assert sorted(out) == ["output_0", "output_1"]
    assert out["output_0"].tolist() == [0.0, 2.0, 4.0]
    assert out["output_1"].dtype == np.float32


def test_signature_names_dtypes_and_dynamic_sizes(net: bytes) -> None:
    assert signature(load_program(net)) == [
        ("x", torch.float32, [None, 4, 16]),
        ("scale", torch.float32, []),
    ]


def test_a_torchscript_module_or_junk_is_not_a_program(batch: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Pair()), buffer)
    for artifact in (buffer.getvalue(), b"not a zip"):
        with pytest.raises(RuntimeJobError, match=r"not a torch\.export program.*torch\.export"):
            export(artifact, st(x=torch.ones(3)))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"scale": torch.tensor(0.25)}, r"missing input tensors \['x'\]"),
        (
            {"x": torch.ones(2, 4, 16), "scale": torch.tensor(0.25), "y": torch.ones(1)},
            r"unexpected input tensors \['y'\]",
        ),
        (
            {"x": torch.ones(2, 4, 16, dtype=torch.float64), "scale": torch.tensor(0.25)},
            r"'x' is torch.float64, the program takes torch.float32",
        ),
        (
            {"x": torch.ones(2, 5, 16), "scale": torch.tensor(0.25)},
            r"'x' has shape \[2, 5, 16\], the program takes \[\*, 4, 16\]",
        ),
    ],
)
def test_inputs_that_do_not_match_name_the_fix(
    net: bytes, inputs: dict[str, torch.Tensor], message: str
) -> None:
    with pytest.raises(RuntimeJobError, match=message) as info:
        export(net, st(**inputs))
    assert "write a safetensors file of exactly x: float32[*, 4, 16], scale: float32[]" in str(
        info.value
    )


def test_a_static_batch_size_is_refused_with_the_export_fix() -> None:
    program = program_bytes(Pair(), (torch.ones(3),))
    with pytest.raises(RuntimeJobError, match=r"'x' has shape \[5\], the program takes \[3\]"):
        export(program, st(x=torch.ones(5)))


class Total(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum()


def test_a_whole_tensor_sum_depends_on_the_thread_count_unless_the_kind_pins_it(
    threads: None,
) -> None:
    # The ops of `Net` (convolution, layer norm, softmax, matmuls) give the same bits on 1 and
    # 2 threads under the pinned kernels; a whole-tensor reduction does not: ATen sums one
    # partial per thread. This is why the kind runs programs on one CPU thread.
    program = program_bytes(Total(), (torch.ones(8),), ({0: torch.export.Dim("n")},))
    x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(2))
    module = load_program(program).module()
    direct = {}
    for count in (1, 2):
        torch.set_num_threads(count)
        with torch.inference_mode():
            direct[count] = module(x).item()
    assert direct[1] != direct[2]
    by_kind = set()
    for count in (1, 2):
        torch.set_num_threads(count)
        by_kind.add(export(program, st(x=x))["output"].item())
    assert by_kind == {direct[1]}
