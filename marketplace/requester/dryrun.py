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
from dataclasses import dataclass

from marketplace.requester.errors import InputError

__all__ = ["DryRun", "dry_run_torchscript"]


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
    dtypes = {
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
