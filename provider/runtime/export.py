"""The `export` kind: a torch.export program (`.pt2`) run on safetensors inputs.

The artifact is an ``ExportedProgram`` written with ``torch.export.save``; the provider reads it
with ``torch.export.load``. Unlike TorchScript, an exported program is a flat graph of ATen ops
whose inputs are known by name and (fake) shape and dtype, so the inputs are checked against
the program before it runs.

Calling convention: each user input of the program (``ep.graph_signature.user_inputs``, the
names of ``forward``'s tensor parameters for a module exported with positional or keyword
tensors) is taken from the safetensors tensor of the same name; every one must be there, with
the dtype and rank the program was exported with and its static sizes. Export with a dynamic
first dimension (``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``) to run batches of
other sizes, which sharding along dimension 0 needs. Extra tensors are refused: a misspelt name
would otherwise be ignored silently.

Outputs: a tensor becomes ``{"output": tensor}``; a dict of tensors keeps its names; a tuple or
list of tensors becomes ``output_0``, ``output_1``, ... bfloat16 outputs are widened to float32
(exactly). Determinism as for `torchscript`: global seeds reset before the call, one intra-op
thread on the CPU (whole-tensor reductions split per thread), deterministic algorithms.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
import torch.utils._pytree as pytree

from provider.runtime import RuntimeJobError
from provider.runtime.determinism import check_cpu_profile, make_deterministic, seed_all
from provider.runtime.device import select_device
from provider.runtime.torchscript import _threads, load_inputs, tensor_outputs


def export(
    program_bytes: bytes, inputs: bytes, device: torch.device | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """Runs the exported program in `program_bytes` on the tensors of the safetensors file
    `inputs` and returns its outputs as named numpy arrays."""
    make_deterministic()
    device = select_device() if device is None else device
    if device.type == "cpu":
        check_cpu_profile()
    program = load_program(program_bytes)
    tensors = load_inputs(inputs, device)
    ordered = check_inputs(program, tensors)
    try:
        module = program.module()
        if device.type != "cpu":
            module = module.to(device)
        args, kwargs = pytree.tree_unflatten(ordered, program.call_spec.in_spec)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise RuntimeJobError(
            f"the exported program cannot be prepared to run ({exc}); export it again with "
            "torch.export.export(module, args) and save it with torch.export.save"
        ) from exc
    seed_all()
    try:
        with _threads(1 if device.type == "cpu" else None), torch.inference_mode():
            result = module(*args, **kwargs)
    except (RuntimeError, ValueError, AssertionError) as exc:
        if isinstance(exc, RuntimeJobError):
            raise
        raise RuntimeJobError(
            f"the exported program failed on its inputs: {exc}; check the input shapes "
            "against the program's (a batch size other than the exported one needs a dynamic "
            "first dimension), or that every op it uses has a deterministic implementation on "
            "this device"
        ) from exc
    return outputs(result)


def load_program(program_bytes: bytes) -> torch.export.ExportedProgram:
    """The ExportedProgram saved in `program_bytes` (torch.export.save)."""
    try:
        program = torch.export.load(io.BytesIO(program_bytes))
    except Exception as exc:  # the loader raises anything from zip, JSON and pickle readers
        raise RuntimeJobError(
            f"the model artifact is not a torch.export program ({_first_line(exc)}); save one "
            "with torch.export.save(torch.export.export(module, args), 'model.pt2') and upload "
            "that file"
        ) from exc
    if not isinstance(program, torch.export.ExportedProgram):
        raise RuntimeJobError(
            f"the model artifact holds a {type(program).__name__}, not an ExportedProgram; "
            "save the result of torch.export.export with torch.export.save"
        )
    return program


def signature(program: torch.export.ExportedProgram) -> list[tuple[str, torch.dtype, list[Any]]]:
    """(name, dtype, sizes) of each user input in call order; a size is an int when static and
    None when the program was exported with that dimension dynamic."""
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    out: list[tuple[str, torch.dtype, list[Any]]] = []
    for name in program.graph_signature.user_inputs:
        node = placeholders.get(str(name))
        value = None if node is None else node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise RuntimeJobError(
                f"the exported program takes a non-tensor input {name!r}; export a module whose "
                "forward takes tensors only (fold constants into the module)"
            )
        sizes = [d if isinstance(d, int) else None for d in value.shape]
        out.append((str(name), value.dtype, sizes))
    return out


def check_inputs(
    program: torch.export.ExportedProgram, tensors: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    """The input tensors in the program's call order; RuntimeJobError naming every missing,
    extra or mismatched tensor and how to fix it."""
    expected = signature(program)
    problems: list[str] = []
    names = {name for name, _, _ in expected}
    missing = [name for name in sorted(names) if name not in tensors]
    if missing:
        problems.append(f"missing input tensors {missing}")
    extra = sorted(set(tensors) - names)
    if extra:
        problems.append(f"unexpected input tensors {extra}")
    for name, dtype, sizes in expected:
        tensor = tensors.get(name)
        if tensor is None:
            continue
        if tensor.dtype != dtype:
            problems.append(f"{name!r} is {tensor.dtype}, the program takes {dtype}")
        if tensor.dim() != len(sizes) or any(
            s is not None and s != t for s, t in zip(sizes, tensor.shape, strict=False)
        ):
            problems.append(
                f"{name!r} has shape {list(tensor.shape)}, the program takes {_shape(sizes)}"
            )
    if problems:
        wanted = ", ".join(
            f"{n}: {str(d).removeprefix('torch.')}{_shape(z)}" for n, d, z in expected
        )
        raise RuntimeJobError(
            "the inputs do not match the exported program: "
            + "; ".join(problems)
            + f"; write a safetensors file of exactly {wanted} (* is a dynamic size)"
        )
    return [tensors[name] for name, _, _ in expected]


def outputs(result: Any) -> dict[str, np.ndarray[Any, Any]]:
    """The job outputs of what the program returned (see the module docstring)."""
    found = tensor_outputs(result, sequences=True)
    if found is not None:
        return found
    raise RuntimeJobError(
        f"the exported program returned {type(result).__name__}, which is not a job output; "
        "make forward return a tensor, a tuple of tensors or a dict of named tensors"
    )


def _shape(sizes: list[Any]) -> str:
    return "[" + ", ".join("*" if s is None else str(s) for s in sizes) + "]"


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__
