"""The `matmul` kind: a seeded float32 matrix-product chain, the throughput benchmark."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from provider.runtime import RuntimeJobError
from provider.runtime.determinism import check_cpu_profile, make_deterministic
from provider.runtime.device import select_device

#: Largest accepted matrix side: three 1 GiB float32 matrices on the device, a 1 GiB output.
MAX_N = 16_384
#: Most products in one job.
MAX_ITERATIONS = 10_000


def matmul_flops(n: int, iterations: int = 1) -> int:
    """Floating-point operations of `matmul(n, seed, iterations)`: 2·n³ per product."""
    return 2 * n**3 * iterations


def matmul(
    n: int, seed: int, iterations: int = 1, device: torch.device | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """C = A @ B, then `iterations - 1` times C = (C @ B) * sqrt(3 / n); returns {"c": C}.

    A and B are n x n float32 matrices uniform in [-1, 1), drawn from a CPU `torch.Generator`
    seeded with `seed` (A first), so every device multiplies the same inputs. Uniform draws
    are bit-identical on every CPU; torch's normal draws are not (its vectorised log/cos give
    other bits than its scalar kernels, used on CPUs without AVX2). The factor sqrt(3 / n) keeps the
    entries' spread constant from product to product (B's entries have variance 1/3):
    without it they grow, or with 1/n shrink, geometrically into overflow or denormals.
    """
    _check_int("n", n, 1, MAX_N)
    _check_int("seed", seed, 0, 2**64 - 1)
    _check_int("iterations", iterations, 1, MAX_ITERATIONS)
    make_deterministic()
    device = select_device() if device is None else device
    if device.type == "cpu":
        check_cpu_profile()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    a = _uniform(n, generator)
    b = _uniform(n, generator)
    scale = math.sqrt(3.0 / n)
    with torch.inference_mode():
        a, b = a.to(device), b.to(device)
        c = a @ b
        for _ in range(iterations - 1):
            c = torch.mul(c @ b, scale)
        return {"c": c.cpu().numpy()}


def _uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    # rand gives multiples of 2**-24 in [0, 1); doubling and subtracting 1 are both exact.
    return torch.rand((n, n), generator=generator, dtype=torch.float32).mul_(2.0).sub_(1.0)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RuntimeJobError(
            f"matmul parameter {name} must be an integer in [{low}, {high}], "
            f"got {value!r}; fix it in the job spec"
        )
