"""The device a worker runs on, its determinism profile and the hardware it registers."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from provider.runtime import RuntimeJobError
from provider.runtime.determinism import set_cublas_workspace

_GIB = 2**30


@dataclass(frozen=True)
class Hardware:
    """What a provider registers: the accelerator's model name and whole GiB of its memory."""

    #: "cpu", or the GPU's name as CUDA reports it ("NVIDIA H100 80GB HBM3").
    model: str
    #: Total GPU memory in whole GiB, rounded down; 0 on CPU.
    vram_gib: int


def select_device() -> torch.device:
    """The first CUDA device when CUDA is usable, the CPU otherwise."""
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def torch_version() -> str:
    """torch's public version without its local build tag: "2.13.0" for "2.13.0+cpu"."""
    return str(torch.__version__).partition("+")[0]


def profile_name(device: torch.device | None = None) -> str:
    """The determinism profile of jobs run on `device`, as the ProviderRegistry names it.

    "torch-2.13.0/cpu/float32/deterministic" or "torch-2.13.0/cuda/float32/deterministic".
    """
    device = select_device() if device is None else device
    if device.type not in ("cpu", "cuda"):
        raise RuntimeJobError(
            f"no determinism profile covers device type {device.type!r}; run on 'cpu' or 'cuda'"
        )
    return f"torch-{torch_version()}/{device.type}/float32/deterministic"


def hardware(device: torch.device | None = None) -> Hardware:
    """The GPU model and VRAM of `device` (from torch.cuda), or ("cpu", 0) for the CPU.

    Reading them starts CUDA, so the cuBLAS workspace setting is applied first. A Celery
    prefork parent must not call this for a CUDA device: forked children cannot use CUDA
    once their parent started it.
    """
    device = select_device() if device is None else device
    if device.type != "cuda":
        return Hardware(model="cpu", vram_gib=0)
    set_cublas_workspace()
    props = torch.cuda.get_device_properties(device)
    return Hardware(model=str(props.name), vram_gib=int(props.total_memory) // _GIB)
