"""The `torchscript` kind: a TorchScript module artifact run on safetensors inputs.

Calling convention: the module is called with keyword arguments, ``module(**inputs)``: every
tensor in the safetensors file is passed under its own name, so the names must be the
parameter names of the module's ``forward`` (a traced ``nn.Linear`` takes ``input``).
Parameters with defaults may be left out; ones that are not tensors must have defaults.

Outputs: a tensor becomes ``{"output": tensor}``; a ``Dict[str, Tensor]`` keeps its names.
bfloat16 outputs are widened to float32 (exactly), since numpy has no bfloat16. The global
seeds are reset before the call, so modules that draw random numbers are deterministic too.

On the CPU the module runs on one thread: ATen splits whole-tensor reductions (``x.sum()``,
``x.mean()``) into one partial sum per thread, so their bits depend on the thread count, and
an arbitrary module may use them. Run several workers to use several cores.
TorchScript runs no Python, but a module may still use any memory and time it likes: run
workers with resource limits.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import safetensors.torch
import torch

from provider.runtime import RuntimeJobError
from provider.runtime.determinism import check_cpu_profile, make_deterministic, seed_all
from provider.runtime.device import select_device


def torchscript(
    module_bytes: bytes, inputs: bytes, device: torch.device | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """Runs the TorchScript module in `module_bytes` on the tensors of the safetensors file
    `inputs` and returns its outputs as named float32 (or other numpy) arrays."""
    make_deterministic()
    device = select_device() if device is None else device
    if device.type == "cpu":
        check_cpu_profile()
    module = load_module(module_bytes, device)
    tensors = load_inputs(inputs, device)
    _check_arguments(module, tensors)
    seed_all()
    try:
        with _threads(1 if device.type == "cpu" else None), torch.inference_mode():
            result = module(**tensors)
            return _outputs(result)
    except RuntimeError as exc:
        if isinstance(exc, RuntimeJobError):
            raise
        raise RuntimeJobError(
            f"the TorchScript module failed on its inputs: {exc}; "
            "check the input shapes and dtypes against the module, or that every op it uses "
            "has a deterministic implementation on this device"
        ) from exc


def load_module(module_bytes: bytes, device: torch.device) -> torch.jit.ScriptModule:
    """The TorchScript module saved in `module_bytes` (torch.jit.save), on `device`, in eval."""
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript; the protocol's `torchscript` kind still uses it.
            warnings.simplefilter("ignore", DeprecationWarning)
            module: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
                io.BytesIO(module_bytes), map_location=device
            )
    except (RuntimeError, ValueError) as exc:
        raise RuntimeJobError(
            f"the module artifact is not a TorchScript module ({exc}); "
            "save one with torch.jit.save(torch.jit.script(module), path) and upload that file"
        ) from exc
    module.eval()
    return module


def load_inputs(inputs: bytes, device: torch.device) -> dict[str, torch.Tensor]:
    """The named tensors of the safetensors file `inputs`, moved to `device`."""
    try:
        tensors = safetensors.torch.load(inputs)
    except Exception as exc:  # SafetensorError derives from Exception only
        raise RuntimeJobError(
            f"the input artifact is not a safetensors file ({exc}); "
            "write the inputs with safetensors.torch.save({name: tensor, ...})"
        ) from exc
    return {name: tensor.to(device) for name, tensor in tensors.items()}


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Runs the block on `count` intra-op threads (None: as set), then restores the setting."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_arguments(module: torch.jit.ScriptModule, tensors: dict[str, torch.Tensor]) -> None:
    try:
        schema: Any = module.forward.schema  # type: ignore[attr-defined]
    except AttributeError as exc:
        raise RuntimeJobError(
            "the TorchScript module has no forward method; script a module that defines one"
        ) from exc
    arguments = schema.arguments[1:]  # arguments[0] is self
    names = {argument.name for argument in arguments}
    unexpected = sorted(set(tensors) - names)
    missing = [a.name for a in arguments if a.name not in tensors and not a.has_default_value()]
    if missing or unexpected:
        raise RuntimeJobError(
            f"the inputs do not match the module's {schema}: missing {missing}, unexpected "
            f"{unexpected}; name the safetensors tensors after forward's parameters"
        )


def tensor_outputs(
    result: Any, *, sequences: bool = False
) -> dict[str, np.ndarray[Any, Any]] | None:
    """The job outputs of a Tensor ("output"), a non-empty dict of named tensors or, with
    `sequences`, a non-empty tuple or list of tensors ("output_0", ...); None for anything else."""
    if isinstance(result, torch.Tensor):
        return {"output": _to_numpy("output", result)}
    if (
        isinstance(result, dict)
        and result
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in result.items())
    ):
        return {name: _to_numpy(name, tensor) for name, tensor in result.items()}
    if (
        sequences
        and isinstance(result, tuple | list)
        and result
        and all(isinstance(v, torch.Tensor) for v in result)
    ):
        return {f"output_{i}": _to_numpy(f"output_{i}", t) for i, t in enumerate(result)}
    return None


def _outputs(result: Any) -> dict[str, np.ndarray[Any, Any]]:
    found = tensor_outputs(result)
    if found is not None:
        return found
    raise RuntimeJobError(
        f"the module returned {type(result).__name__}, which is not a job output; "
        "make forward return a Tensor or a non-empty Dict[str, Tensor]"
    )


def _to_numpy(name: str, tensor: torch.Tensor) -> np.ndarray[Any, Any]:
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise RuntimeJobError(
            f"output {name!r} is a {tensor.layout} tensor; return a dense, unquantized tensor"
        )
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    try:
        return tensor.detach().cpu().contiguous().numpy()
    except TypeError as exc:
        raise RuntimeJobError(
            f"output {name!r} has dtype {tensor.dtype}, which numpy cannot hold; "
            "convert it to float32 inside the module"
        ) from exc
