"""Properties of the result digest: it depends on the values, shape, dtype and names of the
outputs, never on how an array lies in memory (C or Fortran order, transposed, strided,
channels-last, reversed, big-endian, zero-size), on the sign of a zero or on a NaN's payload."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from marketplace.protocol.digest import DIGEST_VERSION, digest

Array = np.ndarray[Any, Any]

PROFILE = "torch-2.13.0/cpu/float32/deterministic"
INTEGERS = ("|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8")
DTYPES = (*INTEGERS, "<f2", "<f4", "<f8", "<c8", "<c16")
# The canonical quiet NaN of each float width, as the digest format writes it.
NAN_BITS = {2: 0x7E00, 4: 0x7FC0_0000, 8: 0x7FF8_0000_0000_0000}
EXPONENT = {2: 0x7C00, 4: 0x7F80_0000, 8: 0x7FF0_0000_0000_0000}
UNSIGNED = {2: "<u2", 4: "<u4", 8: "<u8"}

FAST = settings(max_examples=60, deadline=None)

dtypes = st.sampled_from(DTYPES).map(np.dtype)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
names = st.text(min_size=0, max_size=6)


@st.composite
def arrays(draw: st.DrawFn, dtype: np.dtype[Any] | None = None) -> Array:
    """A C-contiguous array of any portable dtype and small shape, NaN, inf and -0.0 included."""
    chosen = draw(dtypes) if dtype is None else dtype
    result: Array = draw(hnp.arrays(chosen, draw(shapes)))
    return result


def _element_bytes(value: Any, dtype: np.dtype[Any]) -> bytes:
    """One element as the digest format writes it, computed a scalar at a time."""
    if dtype.kind == "c":
        part = np.dtype(f"<f{dtype.itemsize // 2}")
        return _element_bytes(value.real, part) + _element_bytes(value.imag, part)
    little = dtype.newbyteorder("<")
    if dtype.kind == "f":
        if np.isnan(value):
            return NAN_BITS[dtype.itemsize].to_bytes(dtype.itemsize, "little")
        if value == 0:
            return bytes(dtype.itemsize)
    return np.array(value, dtype=little).tobytes()


def reference_digest(outputs: dict[str, Array]) -> bytes:
    """The digest format of marketplace/protocol/digest.py written out element by element."""

    def field(data: bytes) -> bytes:
        return struct.pack("<I", len(data)) + data

    stream = field(DIGEST_VERSION) + field(PROFILE.encode())
    for name in sorted(outputs):
        array = outputs[name]
        little = array.dtype.newbyteorder("<")
        data = b"".join(_element_bytes(v, array.dtype) for v in array.flat)  # C order
        stream += field(name.encode())
        stream += field(little.str.encode())
        stream += field(b"".join(struct.pack("<Q", side) for side in array.shape))
        stream += field(data)
    return hashlib.sha256(stream).digest()


def layouts(array: Array, permutation: list[int]) -> dict[str, Array]:
    """Arrays equal to `array` in value, shape and dtype, each laid out differently in memory."""
    ndim = array.ndim
    order = tuple(permutation)
    stored = array.transpose(order).copy(order="C")
    # The trailing Ellipsis keeps a 0-d view an array, not a numpy scalar.
    back: tuple[Any, ...] = (*(slice(None, None, -1),) * ndim, Ellipsis)
    odd: tuple[Any, ...] = (*(slice(1, None, 2),) * ndim, Ellipsis)
    strided = np.zeros(tuple(2 * side + 1 for side in array.shape), dtype=array.dtype)
    strided[odd] = array
    result = {
        "fortran": array.copy(order="F"),
        "transposed": array.T.copy(order="C").T,
        "permuted (channels-last for 4-D)": stored.transpose(
            tuple(int(i) for i in np.argsort(order))
        ),
        "strided": strided[odd],
        "reversed": array[back].copy(order="C")[back],
        "byte-swapped": array.astype(array.dtype.newbyteorder()),
    }
    for name, view in result.items():
        assert view.shape == array.shape, name
        assert np.array_equal(view, array, equal_nan=array.dtype.kind in "fc"), name
    return result


@FAST
@given(arrays(), st.data())
def test_the_digest_is_the_format_written_element_by_element(array: Array, data: Any) -> None:
    other = data.draw(arrays(), label="other")
    outputs = {"a": array, "b": other}
    assert digest(PROFILE, outputs) == reference_digest(outputs)


@FAST
@given(arrays(), st.data())
def test_memory_layout_never_changes_the_digest(array: Array, data: Any) -> None:
    permutation = data.draw(st.permutations(range(array.ndim)), label="permutation")
    expected = digest(PROFILE, {"x": array})
    for name, view in layouts(array, list(permutation)).items():
        assert digest(PROFILE, {"x": view}) == expected, name


@FAST
@given(arrays(np.dtype("<i8")))
def test_a_transposed_int64_output_digests_as_its_values(array: Array) -> None:
    # Integer outputs take their own path through the digest; a model can return a transposed
    # or strided integer tensor (argmax indices, token ids) and must not crash or differ.
    transposed = array.T.copy(order="C").T
    assert digest(PROFILE, {"x": transposed}) == digest(PROFILE, {"x": array})
    assert digest(PROFILE, {"x": transposed}) == reference_digest({"x": array})


@FAST
@given(st.sampled_from(["<f2", "<f4", "<f8", "<c8", "<c16"]).map(np.dtype), st.data())
def test_zero_signs_and_nan_payloads_never_change_the_digest(
    dtype: np.dtype[Any], data: Any
) -> None:
    array = data.draw(arrays(dtype))
    width = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    parts = array.copy().reshape(-1).view(f"<f{width}")
    bits = parts.view(UNSIGNED[width])
    sign = 1 << (8 * width - 1)
    zeros = parts == 0
    nans = np.isnan(parts)
    # Every zero flips its sign; every NaN gets a payload and a sign drawn at random.
    bits[zeros] ^= sign
    exponent = EXPONENT[width]
    mantissa = (sign - 1) & ~exponent
    for i in np.flatnonzero(nans):
        payload = data.draw(st.integers(1, mantissa), label="payload")
        bits[i] = exponent | payload | data.draw(st.sampled_from([0, sign]), label="sign")
    messy = parts.view(dtype).reshape(array.shape)
    assert np.isnan(parts[nans]).all()
    assert digest(PROFILE, {"x": messy}) == digest(PROFILE, {"x": array})


def _changed(value: Any) -> Any:
    """A value the digest must tell apart from `value`."""
    if isinstance(value, np.bool_):
        return not value
    if isinstance(value, np.integer):
        return value ^ value.dtype.type(1)
    return 1 if value == 0 else 0  # NaN, inf and every nonzero become 0; a zero becomes 1


@FAST
@given(arrays(), st.data())
def test_any_change_of_value_shape_dtype_or_name_changes_the_digest(
    array: Array, data: Any
) -> None:
    base = digest(PROFILE, {"x": array})
    if array.size:
        index = data.draw(st.integers(0, array.size - 1), label="index")
        changed = array.copy()
        changed.flat[index] = _changed(changed.flat[index])
        assert digest(PROFILE, {"x": changed}) != base, "value"
    assert digest(PROFILE, {"x": array.reshape((1, *array.shape))}) != base, "shape"
    if array.ndim != 1:
        assert digest(PROFILE, {"x": array.reshape(-1)}) != base, "flattened shape"
    other = data.draw(dtypes.filter(lambda d: d != array.dtype), label="dtype")
    with np.errstate(invalid="ignore", over="ignore"):
        cast = array.astype(other) if array.dtype.kind != "c" or other.kind == "c" else array.real
    if cast.dtype != array.dtype:
        assert digest(PROFILE, {"x": cast}) != base, "dtype"
    name = data.draw(names.filter(lambda n: n != "x"), label="name")
    assert digest(PROFILE, {name: array}) != base, "name"


@FAST
@given(st.dictionaries(names, arrays(), max_size=4), st.randoms())
def test_only_names_and_arrays_count_not_the_mapping_order(
    outputs: dict[str, Array], random: Any
) -> None:
    items = list(outputs.items())
    random.shuffle(items)
    assert digest(PROFILE, dict(items)) == digest(PROFILE, outputs)
    assert digest(PROFILE, outputs) == reference_digest(outputs)
