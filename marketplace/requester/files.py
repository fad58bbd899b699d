"""Writing a verified result's outputs to disk: safetensors by default, .npy for one array."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as st_save

from marketplace.requester.errors import InputError

__all__ = ["write_outputs"]


def write_outputs(
    outputs: Mapping[str, np.ndarray[Any, Any]],
    out: Path,
    *,
    job_id: int,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Writes a result's outputs to `out` and returns the file written.

    - `out` an existing directory: ``<out>/job-<id>.safetensors``;
    - `out` ending in ``.npy``: the single output array with `numpy.save` (refused when the
      result has several outputs, since .npy holds one array);
    - anything else: a safetensors file of every output by name, with `metadata` (job id,
      provider, digest), readable with ``safetensors.numpy.load_file``.

    Safetensors is the default because results are named tensors (the digest covers the names)
    and it loads without pickle. The file appears atomically (temp file + rename).
    """
    out = Path(out).expanduser()
    if out.is_dir():
        out = out / f"job-{job_id}.safetensors"
    if out.suffix.lower() == ".npy":
        if len(outputs) != 1:
            raise InputError(
                f"job {job_id} has {len(outputs)} outputs ({', '.join(sorted(outputs))}) and a "
                ".npy file holds one array; write a .safetensors file instead"
            )
        (array,) = outputs.values()
        data = _npy_bytes(array)
    else:
        arrays = {n: np.ascontiguousarray(a) for n, a in outputs.items()}
        data = bytes(st_save(arrays, metadata=dict(metadata or {})))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _npy_bytes(array: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
