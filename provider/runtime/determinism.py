"""Deterministic PyTorch: the settings every worker applies before it runs a job.

The CPU settings are environment variables read once per process, by MKL at its first call,
by ATen at its first kernel dispatch and by oneDNN at its first primitive (not when torch is
imported), so this module sets them when it is imported: MKL's strict conditional-numerical-
reproducibility mode on its AVX2 code path (``MKL_CBWR=AVX2,STRICT``: float32 GEMM results no
longer depend on the thread count or the CPU generation), ATen's AVX2 kernels
(``ATEN_CPU_CAPABILITY=avx2``) and oneDNN's (``ONEDNN_MAX_CPU_ISA=AVX2``, convolutions), so
that an AVX-512 machine computes what an AVX2 one does. Without them, a matrix product gives
different bits with 1 and 2 threads, and a convolution on AVX-512 and AVX2 machines. Import
this module (every kind imports it) before any torch computation runs in the process.

`make_deterministic` must run before anything touches CUDA: cuBLAS reads
``CUBLAS_WORKSPACE_CONFIG`` when it creates its first handle, and without it deterministic
matrix products on the GPU are impossible (torch then raises on the first matmul). The Celery
worker calls it once at start; every kind calls it again (it is idempotent) so a kind run on
its own is deterministic too.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from provider.runtime import RuntimeJobError

#: Environment the CPU libraries read once, at their first use; part of the CPU profile.
CPU_ENVIRONMENT: dict[str, str] = {
    "MKL_CBWR": "AVX2,STRICT",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
os.environ.update(CPU_ENVIRONMENT)

#: cuBLAS workspace setting that makes its kernels deterministic; part of the profile.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"

#: The seed of torch's, numpy's and Python's global generators before every job.
DEFAULT_SEED = 0


def make_deterministic(seed: int = DEFAULT_SEED) -> None:
    """Sets deterministic algorithms, no TF32, no cuDNN autotuning and fixed global seeds.

    Raises `RuntimeJobError` when CUDA already started under another cuBLAS workspace setting;
    then only a fresh process that calls this first can run deterministic jobs.
    """
    set_cublas_workspace()
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.set_float32_matmul_precision("highest")
    seed_all(seed)


def set_cublas_workspace() -> None:
    """Sets ``CUBLAS_WORKSPACE_CONFIG``; raises `RuntimeJobError` if CUDA started without it."""
    current = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if current == CUBLAS_WORKSPACE_CONFIG:
        return
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        raise RuntimeJobError(
            f"CUDA started before the deterministic settings (CUBLAS_WORKSPACE_CONFIG="
            f"{current!r}); "
            "call provider.runtime.determinism.make_deterministic() at process start, "
            f"or export CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE_CONFIG} before starting it"
        )
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG


def check_cpu_profile() -> None:
    """Raises `RuntimeJobError` unless ATen runs its AVX2 kernels, as the CPU profile needs.

    ATen runs others when torch computed anything before this module was imported, or when the
    CPU lacks AVX2 (CPUs other than x86-64, and some older or low-end x86-64 ones).
    """
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        raise RuntimeJobError(
            f"ATen runs its {capability} kernels, but the CPU profile needs AVX2 "
            "(ATEN_CPU_CAPABILITY=avx2 on an x86-64 CPU with AVX2); import "
            "provider.runtime.determinism before any torch computation, or export "
            + " ".join(f"{k}={v}" for k, v in CPU_ENVIRONMENT.items())
        )


def seed_all(seed: int = DEFAULT_SEED) -> None:
    """Seeds torch (CPU and every CUDA device), numpy's and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def is_deterministic() -> bool:
    """Whether every setting `make_deterministic` applies is still in force (seeds aside)."""
    return (
        all(os.environ.get(k) == v for k, v in CPU_ENVIRONMENT.items())
        and os.environ.get("CUBLAS_WORKSPACE_CONFIG") == CUBLAS_WORKSPACE_CONFIG
        and torch.are_deterministic_algorithms_enabled()
        and not torch.is_deterministic_algorithms_warn_only_enabled()
        and not torch.backends.cudnn.benchmark
        and torch.backends.cudnn.deterministic
        and not torch.backends.cuda.matmul.allow_tf32
        and not torch.backends.cudnn.allow_tf32
        and torch.get_float32_matmul_precision() == "highest"
    )
