"""The result digest (marketplace.protocol.digest): canonical, order-free and pinned."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np
import pytest

from marketplace.protocol.digest import DIGEST_VERSION, DigestError, digest, digest_hex
from marketplace.protocol.errors import DepinError

PROFILE = "torch-2.13.0/cpu/float32/deterministic"

Array = np.ndarray[Any, Any]


def _with_bits(bits: list[int], dtype: str) -> Array:
    """A float array holding exactly these bit patterns (dtype "<f2", "<f4" or "<f8")."""
    unsigned = {"<f2": "<u2", "<f4": "<u4", "<f8": "<u8"}[dtype]
    return np.array(bits, dtype=unsigned).view(dtype)


def _field(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def test_pinned_format_matches_an_independent_computation() -> None:
    b = np.array([[1.5, -0.0], [np.nan, 2.0]], dtype="<f4")
    a = np.array([1, -2, 3], dtype="<i8")
    expected = hashlib.sha256(
        _field(b"depin-digest/v1")
        + _field(PROFILE.encode())
        + _field(b"a")
        + _field(b"<i8")
        + _field(struct.pack("<Q", 3))
        + _field(struct.pack("<3q", 1, -2, 3))
        + _field(b"b")
        + _field(b"<f4")
        + _field(struct.pack("<2Q", 2, 2))
        + _field(struct.pack("<4I", 0x3FC0_0000, 0, 0x7FC0_0000, 0x4000_0000))
    ).hexdigest()
    assert digest_hex(PROFILE, {"b": b, "a": a}) == expected
    assert DIGEST_VERSION == b"depin-digest/v1"


def test_digest_is_32_bytes_and_hex_is_its_hex() -> None:
    outputs = {"c": np.arange(6, dtype=np.float32).reshape(2, 3)}
    raw = digest(PROFILE, outputs)
    assert len(raw) == 32
    assert digest_hex(PROFILE, outputs) == raw.hex()


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8"])
def test_negative_zero_digests_as_positive_zero(dtype: str) -> None:
    signed = np.array([0.0, -0.0, 1.0, -0.0], dtype=dtype)
    plain = np.array([0.0, 0.0, 1.0, 0.0], dtype=dtype)
    assert np.signbit(signed[1])
    assert digest(PROFILE, {"x": signed}) == digest(PROFILE, {"x": plain})


def test_canonicalisation_leaves_the_caller_array_alone() -> None:
    signed = np.array([-0.0, np.nan], dtype=np.float32)
    before = signed.view(np.uint32).copy()
    digest(PROFILE, {"x": signed})
    assert np.array_equal(signed.view(np.uint32), before)


@pytest.mark.parametrize(
    ("dtype", "nans"),
    [
        ("<f2", [0x7E00, 0x7C01, 0xFE00, 0xFFFF, 0x7D55]),
        ("<f4", [0x7FC0_0000, 0x7F80_0001, 0xFFC0_0000, 0x7FFF_FFFF, 0xFFC0_1234]),
        ("<f8", [0x7FF8_0000_0000_0000, 0x7FF0_0000_0000_0001, 0xFFF8_0000_0000_0000]),
    ],
)
def test_every_nan_payload_and_sign_digests_alike(dtype: str, nans: list[int]) -> None:
    digests = {digest(PROFILE, {"x": _with_bits([bits, 0], dtype)}) for bits in nans}
    assert len(digests) == 1
    assert digests == {digest(PROFILE, {"x": np.array([np.nan, 0.0], dtype=dtype)})}


def test_complex_parts_are_canonicalised() -> None:
    messy = np.array([complex(-0.0, 1.0), complex(1.0, 0.0)], dtype=np.complex64)
    parts = messy.view(np.float32)
    parts[3] = -0.0
    parts[2] = _with_bits([0xFFC0_0001], "<f4")[0]
    clean = np.array([complex(0.0, 1.0), complex(np.nan, 0.0)], dtype=np.complex64)
    assert digest(PROFILE, {"z": messy}) == digest(PROFILE, {"z": clean})


def test_nan_and_zero_still_differ_from_other_values() -> None:
    base = digest(PROFILE, {"x": np.array([np.nan], dtype=np.float32)})
    assert base != digest(PROFILE, {"x": np.array([np.inf], dtype=np.float32)})
    assert base != digest(PROFILE, {"x": np.array([0.0], dtype=np.float32)})
    tiny = np.array([np.finfo(np.float32).smallest_subnormal], dtype=np.float32)
    assert digest(PROFILE, {"x": tiny}) != digest(PROFILE, {"x": np.zeros(1, np.float32)})


def test_each_part_changes_the_digest() -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = digest(PROFILE, {"c": values})
    changed_value = values.copy()
    changed_value[1, 2] = np.nextafter(changed_value[1, 2], np.float32(np.inf))
    variants = [
        digest(PROFILE, {"d": values}),
        digest(PROFILE, {"c": values.astype(np.float64)}),
        digest(PROFILE, {"c": values.astype(np.int32)}),
        digest(PROFILE, {"c": values.reshape(3, 2)}),
        digest(PROFILE, {"c": values.reshape(1, 2, 3)}),
        digest(PROFILE, {"c": changed_value}),
        digest("torch-2.13.0/cuda/float32/deterministic", {"c": values}),
        digest(PROFILE, {"c": values, "extra": np.zeros(0, np.float32)}),
        digest(PROFILE, {}),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_scalar_and_one_element_arrays_differ() -> None:
    assert digest(PROFILE, {"x": np.array(1.0)}) != digest(PROFILE, {"x": np.array([1.0])})


def test_length_prefixes_keep_field_boundaries() -> None:
    x = np.zeros(2, dtype=np.uint8)
    assert digest("ab", {"c": x}) != digest("a", {"bc": x})
    assert digest(PROFILE, {"a": x, "b": x}) != digest(PROFILE, {"ab": x[:0], "": x})


def test_mapping_order_does_not_matter() -> None:
    a = np.ones(3, dtype=np.float32)
    b = np.arange(4, dtype=np.int64)
    assert digest(PROFILE, {"a": a, "b": b}) == digest(PROFILE, {"b": b, "a": a})


@pytest.mark.parametrize("kind", ["f4", "f8", "f2", "i4", "u8", "c8", "c16"])
def test_big_endian_input_equals_little_endian_input(kind: str) -> None:
    values = np.array([[1.0, -0.0, 3.5], [np.nan, 7.0, 1e3]])
    if kind[0] in "iu":
        values = np.array([[1, 2, 3], [4, 5, 6]])
    little = values.astype(f"<{kind}")
    big = values.astype(f">{kind}")
    assert big.tobytes() != little.tobytes()
    assert digest(PROFILE, {"x": big}) == digest(PROFILE, {"x": little})


def test_memory_layout_does_not_matter() -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    transposed = values.T
    assert not transposed.flags.c_contiguous
    assert digest(PROFILE, {"x": transposed}) == digest(
        PROFILE, {"x": np.ascontiguousarray(transposed)}
    )
    assert digest(PROFILE, {"x": values[:, ::2]}) == digest(PROFILE, {"x": values[:, ::2].copy()})


def test_bool_and_empty_arrays_are_digestible() -> None:
    assert digest(PROFILE, {"m": np.array([True, False])}) != digest(
        PROFILE, {"m": np.array([1, 0], dtype=np.uint8)}
    )
    assert digest(PROFILE, {"e": np.zeros((0, 384), np.float32)}) != digest(
        PROFILE, {"e": np.zeros((0, 3), np.float32)}
    )


@pytest.mark.parametrize(
    "value",
    [
        np.array([1, "a"], dtype=object),
        np.array(["text"]),
        np.array([b"bytes"]),
        np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
        np.zeros(2, dtype=np.longdouble),
    ],
    ids=["object", "unicode", "bytes", "structured", "datetime", "longdouble"],
)
def test_rejects_dtypes_without_a_portable_byte_form(value: Array) -> None:
    with pytest.raises(DigestError, match="no portable byte form"):
        digest(PROFILE, {"x": value})


def test_rejects_non_str_names_non_arrays_and_non_str_profiles() -> None:
    outputs: dict[Any, Any] = {1: np.zeros(1, np.float32)}
    with pytest.raises(DigestError, match="names must be str"):
        digest(PROFILE, outputs)
    with pytest.raises(DigestError, match="not a numpy array"):
        digest(PROFILE, {"x": [1.0, 2.0]})  # type: ignore[dict-item]
    with pytest.raises(DigestError, match="profile"):
        digest(b"profile", {})  # type: ignore[arg-type]
    with pytest.raises(DigestError, match="UTF-8"):
        digest(PROFILE, {"\udcff": np.zeros(1, np.float32)})


def test_digest_error_is_a_depin_value_error() -> None:
    assert issubclass(DigestError, DepinError)
    assert issubclass(DigestError, ValueError)


@pytest.mark.parametrize(
    ("values", "view"),
    [
        (np.arange(12, dtype="<i8").reshape(3, 4), lambda a: a.T),
        (np.arange(12, dtype=">i8").reshape(3, 4), lambda a: a.T),
        (np.arange(24, dtype="<i4").reshape(4, 6), lambda a: a[::2, 1::3]),
        (np.arange(24, dtype="|u1").reshape(2, 3, 4), lambda a: np.asfortranarray(a)),
        (np.arange(6, dtype="<u2").reshape(2, 3), lambda a: a[::-1, ::-1]),
        (np.array([[True, False, True], [False, False, True]]), lambda a: a.T),
    ],
    ids=[
        "int64-transposed",
        "big-int64-transposed",
        "int32-strided",
        "uint8-fortran",
        "uint16-reversed",
        "bool-transposed",
    ],
)
def test_non_contiguous_integer_outputs_digest_as_their_values(values: Array, view: Any) -> None:
    # A model can return a transposed or strided integer tensor (argmax indices, token ids).
    array = view(values)
    assert not array.flags.c_contiguous
    assert digest(PROFILE, {"x": array}) == digest(PROFILE, {"x": array.copy(order="C")})


@pytest.mark.parametrize("dtype", ["<c8", "<c16", "<f4"])
def test_zero_dimensional_float_outputs_are_canonicalised(dtype: str) -> None:
    messy = np.array(complex(-0.0, np.nan) if dtype[1] == "c" else -0.0, dtype=dtype)
    clean = np.array(complex(0.0, np.nan) if dtype[1] == "c" else 0.0, dtype=dtype)
    assert messy.ndim == 0
    assert digest(PROFILE, {"x": messy}) == digest(PROFILE, {"x": clean})


def test_error_messages_name_the_culprit_and_the_fix() -> None:
    with pytest.raises(DigestError, match=r"the profile is a str .*, got bytes$"):
        digest(b"profile", {})  # type: ignore[arg-type]
    with pytest.raises(DigestError, match=r"output names must be str, got int 1; name every"):
        digest(PROFILE, {1: np.zeros(1, np.float32)})  # type: ignore[dict-item]
    with pytest.raises(DigestError, match=r"^the profile '\\udcff' is not valid UTF-8 text"):
        digest("\udcff", {})
    with pytest.raises(DigestError, match=r"^the output name '\\udcff' is not valid UTF-8 text"):
        digest(PROFILE, {"\udcff": np.zeros(1, np.float32)})
    with pytest.raises(
        DigestError,
        match=r"^output 'y' is a list, not a numpy array; convert it first \(for a torch tensor: "
        r"t\.detach\(\)\.cpu\(\)\.numpy\(\)\)$",
    ):
        digest(PROFILE, {"y": [1.0]})  # type: ignore[dict-item]
    with pytest.raises(
        DigestError,
        match=r"^output 's' has dtype <U1, which has no portable byte form; convert it to bool, "
        r"an integer, float16/32/64 or complex64/128$",
    ):
        digest(PROFILE, {"s": np.array(["a"])})


class _Recorder:
    """Stands in for sha256 where a real 4 GiB field would take minutes to hash."""

    def __init__(self) -> None:
        self.prefixes: list[bytes] = []

    def update(self, data: Any) -> None:
        if isinstance(data, bytes):
            self.prefixes.append(data)


def test_a_field_holds_at_most_4_gib_minus_one_bytes() -> None:
    from marketplace.protocol.digest import _MAX_FIELD, _field

    # A broadcast view reports a large nbytes while holding one byte.
    largest = np.broadcast_to(np.zeros(1, np.uint8), (_MAX_FIELD,))
    recorder = _Recorder()
    _field(recorder, largest)
    assert recorder.prefixes == [b"\xff\xff\xff\xff"]
    too_large = np.broadcast_to(np.zeros(1, np.uint8), (_MAX_FIELD + 1,))
    with pytest.raises(
        DigestError,
        match=r"^a digest field holds at most 4 GiB - 1 bytes, got 4294967296; split the output",
    ):
        _field(_Recorder(), too_large)
