"""The torch runtime (provider.runtime): real jobs, compared by their digests.

Importing provider.runtime.determinism here, at collection time, sets the CPU environment
(MKL_CBWR, ATEN_CPU_CAPABILITY) before any test computes anything with torch.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from marketplace.protocol.deployment import DEFAULT_PROFILES
from marketplace.protocol.digest import digest_hex
from marketplace.protocol.errors import DepinError
from provider.runtime import RuntimeJobError
from provider.runtime.determinism import (
    CPU_ENVIRONMENT,
    CUBLAS_WORKSPACE_CONFIG,
    is_deterministic,
    make_deterministic,
)
from provider.runtime.device import Hardware, hardware, profile_name, select_device
from provider.runtime.embed import EMBED_DIM, embed
from provider.runtime.matmul import matmul, matmul_flops
from provider.runtime.torchscript import torchscript

CPU = torch.device("cpu")
PROFILE = profile_name(CPU)
ROOT = Path(__file__).resolve().parents[2]

SENTENCES = [
    "A GPU marketplace settles compute jobs on chain.",
    "Verifiers recompute a sample of results and compare digests bit for bit.",
    "über naïve café, 東京 — short",
]

# Shapes that do not fall on GEMM block boundaries; without MKL's strict CNR mode some
# of these products differ between 1 and 2 threads.
MATMUL_JOBS = [(1, 3, 1), (5, 11, 2), (300, 7, 3), (513, 42, 2)]


def _matmul_digests() -> list[str]:
    return [
        digest_hex(PROFILE, matmul(n, seed, iterations, CPU)) for n, seed, iterations in MATMUL_JOBS
    ]


@pytest.fixture
def threads() -> Iterator[None]:
    """Restores torch's intra-op thread count after a test changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# --- device, profile, determinism -----------------------------------------------------------


def test_profile_names_match_the_deployed_profiles() -> None:
    assert PROFILE == "torch-2.13.0/cpu/float32/deterministic" == DEFAULT_PROFILES[0]
    assert profile_name(torch.device("cuda", 0)) == DEFAULT_PROFILES[1]
    assert profile_name(select_device()) in DEFAULT_PROFILES
    with pytest.raises(RuntimeJobError, match="no determinism profile"):
        profile_name(torch.device("meta"))


def test_device_and_hardware_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert select_device() == CPU
    assert hardware() == Hardware(model="cpu", vram_gib=0)


def test_make_deterministic_applies_every_setting() -> None:
    make_deterministic()
    assert is_deterministic()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert all(os.environ[k] == v for k, v in CPU_ENVIRONMENT.items())
    first = (torch.rand(3), np.random.rand(3))
    make_deterministic()
    second = (torch.rand(3), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])


# --- matmul ------------------------------------------------------------------------------------


def test_matmul_digest_is_reproducible() -> None:
    assert _matmul_digests() == _matmul_digests()


def test_matmul_digest_does_not_depend_on_the_thread_count(threads: None) -> None:
    torch.set_num_threads(1)
    one = _matmul_digests()
    torch.set_num_threads(2)
    two = _matmul_digests()
    assert one == two


def test_matmul_digest_changes_with_the_job() -> None:
    base = digest_hex(PROFILE, matmul(64, 1, 2, CPU))
    assert base != digest_hex(PROFILE, matmul(64, 2, 2, CPU))
    assert base != digest_hex(PROFILE, matmul(64, 1, 3, CPU))
    assert base != digest_hex(PROFILE, matmul(65, 1, 2, CPU))


def test_matmul_output_is_the_product_of_the_seeded_inputs() -> None:
    c = matmul(40, 9, 3, CPU)["c"]
    assert c.dtype == np.float32 and c.shape == (40, 40)
    generator = torch.Generator().manual_seed(9)
    a = (torch.rand((40, 40), generator=generator) * 2 - 1).double()
    b = (torch.rand((40, 40), generator=generator) * 2 - 1).double()
    expected = (a @ b @ b @ b) * (3 / 40)
    np.testing.assert_allclose(c, expected.numpy(), rtol=1e-4, atol=1e-5)
    # The spread stays put from product to product.
    assert 0.1 < float(np.std(matmul(200, 9, 20, CPU)["c"])) < 10.0


def test_matmul_flops() -> None:
    assert matmul_flops(1024) == 2 * 1024**3
    assert matmul_flops(10, iterations=3) == 6_000


@pytest.mark.parametrize(
    ("n", "seed", "iterations"),
    [(0, 1, 1), (16_385, 1, 1), (8, -1, 1), (8, 2**64, 1), (8, 1, 0), (True, 1, 1), (8.0, 1, 1)],
)
def test_matmul_rejects_bad_parameters(n: Any, seed: Any, iterations: Any) -> None:
    with pytest.raises(RuntimeJobError, match="job spec"):
        matmul(n, seed, iterations, CPU)


# --- embed -------------------------------------------------------------------------------------


def test_embed_gives_unit_norm_384_dim_rows_reproducibly() -> None:
    first = embed(SENTENCES, device=CPU)
    second = embed(SENTENCES, device=CPU)
    vectors = first["embeddings"]
    assert list(first) == ["embeddings"]
    assert vectors.dtype == np.float32 and vectors.shape == (3, EMBED_DIM) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert digest_hex(PROFILE, first) == digest_hex(PROFILE, second)
    # Related sentences sit closer together than unrelated ones.
    related = embed(["GPU compute jobs settle on a blockchain."], device=CPU)["embeddings"][0]
    assert float(vectors[0] @ related) > float(vectors[2] @ related)


def test_embed_digest_does_not_depend_on_the_thread_count(threads: None) -> None:
    torch.set_num_threads(1)
    one = digest_hex(PROFILE, embed(SENTENCES, batch_size=2, device=CPU))
    torch.set_num_threads(2)
    two = digest_hex(PROFILE, embed(SENTENCES, batch_size=2, device=CPU))
    assert one == two


def test_embed_of_nothing_and_bad_inputs() -> None:
    assert embed([], device=CPU)["embeddings"].shape == (0, EMBED_DIM)
    with pytest.raises(RuntimeJobError, match="list of strings"):
        embed("one sentence", device=CPU)  # type: ignore[arg-type]
    with pytest.raises(RuntimeJobError, match="list of strings"):
        embed(["ok", 3], device=CPU)  # type: ignore[list-item]
    with pytest.raises(RuntimeJobError, match="batch_size"):
        embed(SENTENCES, batch_size=0, device=CPU)


# --- a fresh process ---------------------------------------------------------------------------

_FRESH = """
import json, torch
from marketplace.protocol.digest import digest_hex
from provider.runtime.device import profile_name
from provider.runtime.embed import embed
from provider.runtime.matmul import matmul
torch.set_num_threads(1)
cpu = torch.device("cpu")
print(json.dumps({
    "matmul": [digest_hex(profile_name(cpu), matmul(n, s, i, cpu)) for n, s, i in JOBS],
    "embed": digest_hex(profile_name(cpu), embed(SENTENCES, batch_size=2, device=cpu)),
}))
"""


def test_a_fresh_single_threaded_process_gives_the_same_digests(threads: None) -> None:
    """The CPU settings are applied by the runtime itself, not inherited from this process."""
    env = {k: v for k, v in os.environ.items() if k not in CPU_ENVIRONMENT}
    env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT)
    script = f"JOBS = {MATMUL_JOBS!r}\nSENTENCES = {SENTENCES!r}\n{_FRESH}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    torch.set_num_threads(2)
    assert fresh["matmul"] == _matmul_digests()
    assert fresh["embed"] == digest_hex(PROFILE, embed(SENTENCES, batch_size=2, device=CPU))


# --- torchscript -------------------------------------------------------------------------------


class Scorer(torch.nn.Module):
    """Returns named tensors; uses a whole-tensor reduction and a random draw."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(5)
        self.linear = torch.nn.Linear(16, 4)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(4, 16, generator=generator))
            self.linear.bias.copy_(torch.randn(4, generator=generator))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.linear(x) * mask
        return {
            "logits": logits,
            "total": logits.sum(),
            "noise": torch.rand_like(logits),
            "argmax": logits.argmax(dim=1),
        }


class Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def _scripted(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
        scripted: torch.jit.ScriptModule = torch.jit.script(module)
    return scripted


def _module_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(_scripted(module), buffer)
    return buffer.getvalue()


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    return {
        "x": torch.randn(10_000, 16, generator=generator),
        "mask": (torch.rand(10_000, 1, generator=generator) > 0.2).float(),
    }


def test_torchscript_matches_calling_the_module_directly(threads: None) -> None:
    module = Scorer().eval()
    tensors = _inputs()
    result = torchscript(_module_bytes(module), safetensors.torch.save(tensors), CPU)
    assert sorted(result) == ["argmax", "logits", "noise", "total"]
    assert result["logits"].dtype == np.float32 and result["argmax"].dtype == np.int64
    torch.set_num_threads(1)
    make_deterministic()
    with torch.inference_mode():
        direct = {k: v.numpy() for k, v in _scripted(module)(**tensors).items()}
    assert digest_hex(PROFILE, result) == digest_hex(PROFILE, direct)


def test_torchscript_is_reproducible_and_thread_independent(threads: None) -> None:
    blob, inputs = _module_bytes(Scorer()), safetensors.torch.save(_inputs())
    torch.set_num_threads(1)
    one = digest_hex(PROFILE, torchscript(blob, inputs, CPU))
    torch.set_num_threads(2)
    assert digest_hex(PROFILE, torchscript(blob, inputs, CPU)) == one
    assert torch.get_num_threads() == 2  # the runtime restores the caller's setting


def test_torchscript_tensor_result_is_named_output() -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    result = torchscript(_module_bytes(Doubler()), safetensors.torch.save({"x": x}), CPU)
    assert list(result) == ["output"]
    np.testing.assert_array_equal(result["output"], (x * 2).numpy())


def test_torchscript_rejects_bad_artifacts() -> None:
    inputs = safetensors.torch.save(_inputs())
    with pytest.raises(RuntimeJobError, match="not a TorchScript module") as caught:
        torchscript(b"definitely not a zip archive", inputs, CPU)
    assert isinstance(caught.value, DepinError) and isinstance(caught.value, RuntimeError)
    blob = _module_bytes(Scorer())
    with pytest.raises(RuntimeJobError, match="not a safetensors file"):
        torchscript(blob, b"junk", CPU)
    with pytest.raises(RuntimeJobError, match=r"missing \['mask'\]"):
        torchscript(blob, safetensors.torch.save({"x": torch.zeros(2, 16)}), CPU)
    extra = {**_inputs(), "y": torch.zeros(1)}
    with pytest.raises(RuntimeJobError, match=r"unexpected \['y'\]"):
        torchscript(blob, safetensors.torch.save(extra), CPU)
    wrong_shape = {"x": torch.zeros(2, 15), "mask": torch.ones(2, 1)}
    with pytest.raises(RuntimeJobError, match="failed on its inputs"):
        torchscript(blob, safetensors.torch.save(wrong_shape), CPU)
    with pytest.raises(RuntimeJobError, match="Dict"):
        torchscript(_module_bytes(Pair()), safetensors.torch.save({"x": torch.ones(1)}), CPU)
