"""The result digest: one sha256 that names a job's output tensors bit for bit.

Providers compute it after a run and commit it on-chain; requesters and verifiers recompute it
from the decrypted outputs. It works on numpy arrays only, so checking a result needs no torch.

Format (``depin-digest/v1``). Every field is written as its length (u32, little-endian) followed
by its bytes, so no two different inputs concatenate to the same stream::

    field(DIGEST_VERSION)
    field(profile, UTF-8)
    for each output, in sorted name order:
        field(name, UTF-8)
        field(dtype string, ASCII)        # numpy ``dtype.str`` little-endian: "<f4", "|u1", "<i8"
        field(shape)                      # one u64 little-endian per dimension
        field(data)                       # the little-endian C-order element bytes

Floating-point outputs (and the parts of complex ones) are canonicalised first: ``-0.0`` becomes
``+0.0`` and every NaN becomes the positive quiet NaN with an empty payload, because neither
sign of zero nor NaN payloads are stable across kernels and devices. Accepted dtypes are bool,
signed and unsigned integers, float16/32/64 and complex64/128.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from marketplace.protocol.errors import DepinError

DIGEST_VERSION = b"depin-digest/v1"

_MAX_FIELD = 0xFFFF_FFFF

# The canonical quiet NaN of each float width, as its unsigned bit pattern.
_CANONICAL_NAN: dict[int, tuple[str, int]] = {
    2: ("<u2", 0x7E00),
    4: ("<u4", 0x7FC0_0000),
    8: ("<u8", 0x7FF8_0000_0000_0000),
}


class DigestError(DepinError, ValueError):
    """An output cannot be digested: a non-str name, or a dtype without a portable byte form."""


def digest(profile: str, outputs: Mapping[str, np.ndarray[Any, Any]]) -> bytes:
    """The 32-byte sha256 digest of `outputs` computed under determinism profile `profile`."""
    if not isinstance(profile, str):
        raise DigestError(
            f"the profile is a str such as 'torch-2.13.0/cpu/float32/deterministic', "
            f"got {type(profile).__name__}"
        )
    names = list(outputs)
    for name in names:
        if not isinstance(name, str):
            raise DigestError(
                f"output names must be str, got {type(name).__name__} {name!r}; name every output"
            )
    h = hashlib.sha256()
    _field(h, DIGEST_VERSION)
    _field(h, _utf8(profile, "profile"))
    for name in sorted(names):
        array = _canonical(name, outputs[name])
        _field(h, _utf8(name, "output name"))
        _field(h, array.dtype.str.encode("ascii"))
        _field(h, struct.pack(f"<{array.ndim}Q", *array.shape))
        _field(h, array)
    return h.digest()


def digest_hex(profile: str, outputs: Mapping[str, np.ndarray[Any, Any]]) -> str:
    """`digest` as 64 lowercase hex characters, without a 0x prefix."""
    return digest(profile, outputs).hex()


def _field(h: Any, data: bytes | np.ndarray[Any, Any]) -> None:
    size = data.nbytes if isinstance(data, np.ndarray) else len(data)
    if size > _MAX_FIELD:
        raise DigestError(
            f"a digest field holds at most 4 GiB - 1 bytes, got {size}; split the output in parts"
        )
    h.update(struct.pack("<I", size))
    h.update(data)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DigestError(f"the {what} {text!r} is not valid UTF-8 text; rename it") from exc


def _canonical(name: str, value: Any) -> np.ndarray[Any, Any]:
    """A little-endian, C-contiguous array of `value` with zero signs and NaNs canonicalised."""
    if not isinstance(value, np.ndarray):
        raise DigestError(
            f"output {name!r} is a {type(value).__name__}, not a numpy array; "
            "convert it first (for a torch tensor: t.detach().cpu().numpy())"
        )
    dtype = value.dtype
    portable = (
        dtype.kind in "biu"
        or (dtype.kind == "f" and dtype.itemsize in _CANONICAL_NAN)
        or (dtype.kind == "c" and dtype.itemsize // 2 in _CANONICAL_NAN)
    )
    if not portable:
        raise DigestError(
            f"output {name!r} has dtype {dtype}, which has no portable byte form; "
            "convert it to bool, an integer, float16/32/64 or complex64/128"
        )
    little = dtype.newbyteorder("<")
    if dtype.kind in "biu":
        return np.asarray(value, dtype=little, order="C")
    # Always a fresh copy: the canonicalisation below writes into it.
    array = np.array(value, dtype=little, order="C", copy=True)
    parts = array.reshape(-1).view(
        np.dtype(f"<f{dtype.itemsize // 2}") if dtype.kind == "c" else little
    )
    unsigned, nan_bits = _CANONICAL_NAN[parts.dtype.itemsize]
    bits = parts.view(unsigned)
    bits[parts == 0] = 0
    bits[np.isnan(parts)] = nan_bits
    return array
