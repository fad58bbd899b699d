"""A TorchScript job tried before it is paid for: the module is loaded and called on meta
tensors (shapes and dtypes, no data, no compute), so a module that cannot run on its input (a
missing argument, a wrong shape or dtype, an artifact that is not TorchScript) is refused
before any transaction. Providers call modules the same way: `module(**inputs)`.

Meta tensors carry no values, so a module whose control flow reads a value (`if x.sum() > 0`)
or an op without a meta implementation cannot be tried this way: the check is then
inconclusive and the job goes out as it is.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from marketplace.requester.errors import InputError

__all__ = ["DryRun", "check_export", "dry_run_torchscript"]


@dataclass(frozen=True)
class DryRun:
    """What the dry run showed: `ran` when the module ran on meta tensors; otherwise `note`
    says why it could not tell."""

    ran: bool
    outputs: dict[str, tuple[int, ...]]
    note: str = ""


def dry_run_torchscript(module_bytes: bytes, inputs: bytes, *, source: str = "module") -> DryRun:
    """Calls the TorchScript module in `module_bytes` on meta tensors shaped like the tensors
    of the safetensors file `inputs`. Raises InputError when the module cannot run on them."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates jit
            module = torch.jit.load(io.BytesIO(module_bytes), map_location="meta")  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError) as exc:
        raise InputError(
            f"{source} is not a loadable TorchScript module ({_first_line(exc)}); save it with "
            "torch.jit.save(torch.jit.script(module), path)"
        ) from None
    module.eval()
    dtypes = _dtypes()
    shapes: dict[str, torch.Tensor] = {}
    for name, (dtype_name, shape) in _header(inputs).items():
        dtype = dtypes.get(dtype_name)
        if dtype is None:
            return DryRun(False, {}, f"input {name!r} has dtype {dtype_name}: not tried")
        shapes[name] = torch.empty(shape, dtype=dtype, device="meta")
    try:
        with torch.inference_mode():
            result = module(**shapes)
    except (RuntimeError, NotImplementedError) as exc:
        reason = _reason(str(exc))
        if isinstance(exc, NotImplementedError) or "meta" in reason.lower():
            return DryRun(False, {}, f"not tried on meta tensors: {reason}")
        raise InputError(
            f"the TorchScript module does not run on its input ({reason}); its forward "
            "takes the input tensors by name: check their names, shapes and dtypes against it"
        ) from None
    return DryRun(True, _output_shapes(result))


def check_export(program_bytes: bytes, inputs: bytes, *, source: str = "program") -> None:
    """Refuses an export job whose `program_bytes` is not a torch.export program, or whose
    safetensors `inputs` miss a tensor the program takes, add one it does not, or differ from
    it in dtype, rank or a static size. Providers check the same before they run it."""
    import torch

    try:
        program = torch.export.load(io.BytesIO(program_bytes))
    except Exception as exc:  # the loader raises anything from zip, JSON and pickle readers
        raise InputError(
            f"{source} is not a torch.export program ({_first_line(exc)}); save one with "
            "torch.export.save(torch.export.export(module, args), 'model.pt2')"
        ) from None
    if not isinstance(program, torch.export.ExportedProgram):
        raise InputError(
            f"{source} holds a {type(program).__name__}, not an ExportedProgram; save the result "
            "of torch.export.export with torch.export.save"
        )
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    expected: dict[str, tuple[str, list[int | None]]] = {}
    for name in program.graph_signature.user_inputs:
        node = placeholders.get(str(name))
        value = None if node is None else node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise InputError(
                f"{source} takes a non-tensor input {name!r}; export a module whose forward "
                "takes tensors only (fold constants into the module)"
            )
        static: list[int | None] = [d if isinstance(d, int) else None for d in value.shape]
        expected[str(name)] = (str(value.dtype).removeprefix("torch."), static)
    dtypes = _dtypes()
    given = {
        name: (str(dtypes.get(dtype, dtype)).removeprefix("torch."), shape)
        for name, (dtype, shape) in _header(inputs).items()
    }
    problems = []
    missing = sorted(set(expected) - set(given))
    if missing:
        problems.append(f"missing input tensors {missing}")
    extra = sorted(set(given) - set(expected))
    if extra:
        problems.append(f"unexpected input tensors {extra}")
    for name, (dtype, sizes) in expected.items():
        if name not in given:
            continue
        have, have_shape = given[name]
        if have != dtype:
            problems.append(f"{name!r} is {have}, the program takes {dtype}")
        if len(have_shape) != len(sizes) or any(
            s is not None and s != h for s, h in zip(sizes, have_shape, strict=False)
        ):
            problems.append(f"{name!r} has shape {have_shape}, the program takes {_shape(sizes)}")
    if problems:
        wanted = ", ".join(f"{n}: {d}{_shape(z)}" for n, (d, z) in expected.items())
        raise InputError(
            f"the inputs do not match {source}: "
            + "; ".join(problems)
            + f"; write a safetensors file of exactly {wanted} (* is a dynamic size: export "
            "with dynamic_shapes to accept other sizes there)"
        )


def _shape(sizes: Sequence[int | None]) -> str:
    return "[" + ", ".join("*" if s is None else str(s) for s in sizes) + "]"


def _dtypes() -> dict[str, Any]:
    """safetensors dtype names -> torch dtypes."""
    import torch

    return {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U8": torch.uint8,
        "BOOL": torch.bool,
    }


def _output_shapes(result: object) -> dict[str, tuple[int, ...]]:
    import torch

    if isinstance(result, torch.Tensor):
        return {"output": tuple(result.shape)}
    if isinstance(result, dict):
        return {str(k): tuple(v.shape) for k, v in result.items() if isinstance(v, torch.Tensor)}
    return {}


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


_ERROR_PREFIXES = ("RuntimeError:", "ValueError:", "IndexError:", "TypeError:")


def _reason(text: str) -> str:
    """The interpreter's own message, without the TorchScript tracebacks around it (the last
    `SomeError: ...` line, its repeated prefixes dropped); else the first line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(_ERROR_PREFIXES):
            while line.startswith(_ERROR_PREFIXES):
                line = line.split(":", 1)[1].strip()
            return line
    return lines[0] if lines else "unknown error"


def _header(inputs: bytes) -> dict[str, tuple[str, list[int]]]:
    """Name -> (dtype, shape) of each tensor in a safetensors file (its JSON header)."""
    size = int.from_bytes(inputs[:8], "little")
    header = json.loads(inputs[8 : 8 + size])
    return {
        str(name): (str(entry["dtype"]), [int(d) for d in entry["shape"]])
        for name, entry in header.items()
        if name != "__metadata__"
    }
