"""The job spec: what a requester asks a provider to run, as canonical JSON.

The spec is stored in the artifact store as `canonical_json()` and its sha256 (`spec_hash()`)
goes on-chain as `JobRequest.specHash`. Canonical JSON here means `json.dumps` with sorted keys,
no whitespace (separators `,` and `:`), `ensure_ascii=False`, UTF-8 encoded, NaN and infinities
refused. Keys sort by Python string order (code points), numbers print as Python prints them
(`repr` for floats, so a parsed float prints back identically). It is not RFC 8785 (JCS) and does
not need to be: every producer and consumer of a spec goes through this module.

Everything that reaches `JobSpec` is validated; `from_json` and `from_dict` turn every problem
into one `SpecError` whose message names each bad field and what to write instead. Building a
`JobSpec(...)` directly raises pydantic's `ValidationError` (also a `ValueError`) with the same
per-field hints.

Parsing is strict where laxness would make two byte strings mean one spec or one spec hash to
two values: ints must be JSON integers (not `1.0`, `"1"` or `true`), hashes and keys lowercase
hex without `0x`, duplicate object keys are refused, and `from_json(..., canonical=True)` further
demands that the bytes are exactly the canonical form (what the artifact store checks on upload,
so that `sha256(bytes) == spec_hash()`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

import coincurve
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from marketplace.protocol.errors import DepinError

__all__ = [
    "KINDS",
    "MAX_SPEC_BYTES",
    "SPEC_VERSION",
    "JobKind",
    "JobSpec",
    "ParamScalar",
    "ParamValue",
    "SpecError",
]

SPEC_VERSION: Final = 1
#: Largest spec accepted, in bytes of JSON (input of `from_json`, and the canonical form).
MAX_SPEC_BYTES: Final = 64 * 1024
#: Most input artifacts one spec may name.
MAX_INPUTS: Final = 1_024
#: Matmul matrices are n x n with 1 <= n <= MAX_MATMUL_N.
MAX_MATMUL_N: Final = 8_192
MAX_MATMUL_ITERATIONS: Final = 10_000
MAX_BATCH_SIZE: Final = 4_096
#: `units` is a uint32 on-chain.
MAX_UNITS: Final = 2**32 - 1
MAX_PROFILE_CHARS: Final = 128
MAX_MODEL_CHARS: Final = 256
MAX_PARAMETER_KEY_CHARS: Final = 64

JobKind = Literal["embed", "torchscript", "matmul", "export"]
KINDS: Final[tuple[str, ...]] = get_args(JobKind)

ParamScalar = str | int | float | bool | None
ParamValue = ParamScalar | list[ParamScalar]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PUBLIC_KEY_HEX = re.compile(r"[0-9a-f]{66}|[0-9a-f]{128}")
_PROFILE = re.compile(rf"[\x21-\x7e]{{1,{MAX_PROFILE_CHARS}}}")
_HASH_FIX = "64 lowercase hex characters (a sha256 digest, no 0x prefix)"
_KEY_FIX = (
    "the requester's secp256k1 public key in lowercase hex without 0x: 128 characters (64-byte "
    "uncompressed key without the 04 prefix) or 66 characters (33-byte compressed key)"
)

# One line per field, appended to type errors and missing-field errors.
_FIELD_HELP: Final[dict[str, str]] = {
    "version": f"the integer {SPEC_VERSION}",
    "kind": "one of " + ", ".join(repr(k) for k in KINDS),
    "model": (
        "a model reference: 'sentence-transformers/all-MiniLM-L6-v2' for embed, the sha256 of "
        "the TorchScript artifact for torchscript or of the .pt2 program for export, '' for "
        "matmul"
    ),
    "inputs": f"a list of input artifact hashes, each {_HASH_FIX}",
    "parameters": 'an object of JSON scalars or flat lists of scalars, e.g. {"n": 1024}',
    "profile": "a determinism profile name such as 'torch-2.13.0/cpu/float32/deterministic'",
    "units": f"an integer from 1 to {MAX_UNITS}",
    "requester_public_key": _KEY_FIX,
}


class SpecError(DepinError, ValueError):
    """A job spec is malformed; the message names each bad field and how to fix it."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("invalid job spec: " + "; ".join(self.problems))


def _int_param(
    parameters: Mapping[str, ParamValue],
    kind: str,
    name: str,
    low: int,
    high: int,
    *,
    required: bool,
) -> None:
    if name not in parameters:
        if required:
            raise ValueError(f"{kind} needs parameters.{name}, an integer from {low} to {high}")
        return
    value = parameters[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(
            f"parameters.{name} of {kind} jobs must be an integer from {low} to {high}, "
            f"got {value!r}"
        )


class JobSpec(BaseModel):
    """A job spec, version 1. Immutable; equal specs have equal `canonical_json()`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Spec format version; only 1 exists.
    version: StrictInt
    #: Which workload the provider runs.
    kind: JobKind
    #: Model reference: hub name (embed), artifact sha256 (torchscript, export) or "" (matmul).
    model: str
    #: sha256 hex of each input artifact, in the order the workload consumes them.
    inputs: tuple[str, ...]
    #: Workload parameters (JSON scalars or flat lists of scalars).
    parameters: dict[str, ParamValue]
    #: Determinism profile name; exact comparison of results only within one profile.
    profile: str
    #: Work units the job is priced in; equals `JobRequest.units` on-chain.
    units: StrictInt
    #: Public key the result is encrypted to (ECIES over secp256k1), lowercase hex.
    requester_public_key: str

    # ---------------------------------------------------------------- fields

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: int) -> int:
        if value != SPEC_VERSION:
            raise ValueError(
                f"version {value} is not supported; write version {SPEC_VERSION} "
                "(or upgrade depin-compute to read newer specs)"
            )
        return value

    @field_validator("inputs", mode="before")
    @classmethod
    def _check_inputs(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            return value  # pydantic reports the type error with the field help
        if len(value) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs per spec; split the job")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not _SHA256_HEX.fullmatch(item):
                raise ValueError(f"inputs[{i}] must be {_HASH_FIX}, got {_short(item)}")
        return tuple(value)

    @field_validator("parameters", mode="before")
    @classmethod
    def _check_parameters(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        for key, item in value.items():
            if not isinstance(key, str) or not 1 <= len(key) <= MAX_PARAMETER_KEY_CHARS:
                raise ValueError(
                    f"parameter names must be 1 to {MAX_PARAMETER_KEY_CHARS} characters, "
                    f"got {_short(key)}"
                )
            for element in item if isinstance(item, list) else [item]:
                if isinstance(element, float) and not math.isfinite(element):
                    raise ValueError(
                        f"parameters.{key} holds {element}; JSON has no NaN or infinity, "
                        "use a finite number"
                    )
                if not isinstance(element, str | int | float | bool | None):
                    raise ValueError(
                        f"parameters.{key} must be a JSON scalar (string, number, true, false, "
                        "null) or a flat list of scalars; nested objects and lists are not "
                        "allowed"
                    )
        return value

    @field_validator("profile")
    @classmethod
    def _check_profile(cls, value: str) -> str:
        if not _PROFILE.fullmatch(value):
            raise ValueError(
                f"profile must be 1 to {MAX_PROFILE_CHARS} printable ASCII characters without "
                f"spaces, such as 'torch-2.13.0/cpu/float32/deterministic'; got {_short(value)}"
            )
        return value

    @field_validator("units")
    @classmethod
    def _check_units(cls, value: int) -> int:
        if not 1 <= value <= MAX_UNITS:
            raise ValueError(f"units must be from 1 to {MAX_UNITS} (a uint32), got {value}")
        return value

    @field_validator("requester_public_key")
    @classmethod
    def _check_public_key(cls, value: str) -> str:
        if not _PUBLIC_KEY_HEX.fullmatch(value):
            raise ValueError(
                f"requester_public_key must be {_KEY_FIX}; got {len(value)} characters"
                + (" with a 0x prefix" if value[:2] == "0x" else "")
            )
        raw = bytes.fromhex(value)
        try:
            coincurve.PublicKey(b"\x04" + raw if len(raw) == 64 else raw)
        except ValueError:
            raise ValueError(
                "requester_public_key is not a point on secp256k1; export the public key of the "
                "requester's wallet (eth_keys PublicKey.to_hex() without 0x)"
            ) from None
        return value

    # ---------------------------------------------------------------- per kind

    @model_validator(mode="after")
    def _check_kind(self) -> JobSpec:
        kind, model, inputs, parameters = self.kind, self.model, self.inputs, self.parameters
        if kind == "embed":
            if not model.strip() or len(model) > MAX_MODEL_CHARS:
                raise ValueError(
                    f"embed needs model, a model reference of 1 to {MAX_MODEL_CHARS} characters "
                    "such as 'sentence-transformers/all-MiniLM-L6-v2'"
                )
            if not inputs:
                raise ValueError("embed needs at least one input: the hash of the text artifact")
            _int_param(parameters, kind, "batch_size", 1, MAX_BATCH_SIZE, required=False)
        elif kind in ("torchscript", "export"):
            what = "TorchScript" if kind == "torchscript" else "torch.export program (.pt2)"
            if not _SHA256_HEX.fullmatch(model):
                raise ValueError(
                    f"{kind} needs model, the {what} artifact's hash as {_HASH_FIX}; "
                    f"got {_short(model)}"
                )
            if not inputs:
                raise ValueError(
                    f"{kind} needs at least one input: the hash of a safetensors artifact"
                )
            _int_param(parameters, kind, "batch_size", 1, MAX_BATCH_SIZE, required=False)
        else:  # matmul
            if model:
                raise ValueError(f'matmul takes no model; set model to "" (got {_short(model)})')
            if inputs:
                raise ValueError(
                    "matmul takes no inputs (they are generated from parameters.seed); "
                    "set inputs to []"
                )
            _int_param(parameters, kind, "n", 1, MAX_MATMUL_N, required=True)
            _int_param(parameters, kind, "seed", 0, 2**64 - 1, required=True)
            _int_param(parameters, kind, "iterations", 1, MAX_MATMUL_ITERATIONS, required=False)
        try:
            size = len(self.canonical_json())
        except UnicodeEncodeError:
            raise ValueError(
                "strings must be valid Unicode text; remove lone surrogate escapes such as \\ud800"
            ) from None
        if size > MAX_SPEC_BYTES:
            raise ValueError(
                f"the canonical spec is {size} bytes, above the {MAX_SPEC_BYTES}-byte limit; "
                "move large data into input artifacts"
            )
        return self

    # ---------------------------------------------------------------- encoding

    def canonical_json(self) -> bytes:
        """The spec's canonical bytes: sorted keys, no whitespace, UTF-8."""
        return json.dumps(
            self.model_dump(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode("utf-8")

    def spec_hash(self) -> bytes:
        """sha256 of `canonical_json()`: the 32-byte `specHash` the job carries on-chain."""
        return hashlib.sha256(self.canonical_json()).digest()

    def __hash__(self) -> int:
        return hash(self.spec_hash())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """Validates `data` (a parsed spec), raising SpecError naming every problem."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a spec is a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version != SPEC_VERSION:
            # Other fields may mean other things in another version: report only this.
            raise SpecError(
                f"version: {version} is not supported; write version {SPEC_VERSION} "
                "(or upgrade depin-compute to read newer specs)"
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise SpecError([_describe(e) for e in exc.errors()]) from None

    @classmethod
    def from_json(cls, data: bytes | str, *, canonical: bool = False) -> JobSpec:
        """Parses and validates spec JSON, raising SpecError naming every problem.

        With `canonical=True` the bytes must also be exactly `canonical_json()`, so that their
        sha256 is the spec hash (the artifact store's upload check).
        """
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        if len(raw) > MAX_SPEC_BYTES:
            raise SpecError(
                f"the spec is {len(raw)} bytes, above the {MAX_SPEC_BYTES}-byte limit; "
                "move large data into input artifacts"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(
                f"the spec is not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        if _nesting_depth(text) > MAX_JSON_DEPTH:
            raise SpecError("JSON nested too deeply; parameters are flat")
        try:
            parsed = json.loads(
                text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
            )
        except json.JSONDecodeError as exc:
            raise SpecError(
                f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        except RecursionError:
            raise SpecError("JSON nested too deeply; parameters are flat") from None
        except _JsonProblem as exc:
            raise SpecError(str(exc)) from None
        if not isinstance(parsed, dict):
            raise SpecError(f"a spec is a JSON object, got a JSON {type(parsed).__name__}")
        spec = cls.from_dict(parsed)
        if canonical and spec.canonical_json() != raw:
            raise SpecError(
                "the bytes are not in canonical form (sorted keys, no whitespace, UTF-8 without "
                "escapes); upload JobSpec.canonical_json() instead"
            )
        return spec


class _JsonProblem(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonProblem(f"key {key!r} appears twice in one object; keep one")
        result[key] = value
    return result


def _no_constant(name: str) -> float:
    raise _JsonProblem(f"{name} is not JSON; use a finite number")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(error: ErrorDetails) -> str:
    loc = error["loc"]
    field = str(loc[0]) if loc else ""
    where = ".".join(str(part) for part in loc) if loc else "spec"
    kind = error["type"]
    if kind == "missing":
        return f"{where}: missing; add it ({_FIELD_HELP.get(field, 'see the spec format')})"
    if kind == "extra_forbidden":
        return f"{where}: unknown field; remove it (a spec has {', '.join(_FIELD_HELP)})"
    if kind == "literal_error" and field == "kind":
        return f"kind: unknown kind {_short(error['input'])}; use one of " + ", ".join(
            repr(k) for k in KINDS
        )
    if kind == "value_error":
        # Our validators' messages already name the field (and the element inside it).
        return str(error.get("ctx", {}).get("error", error["msg"]))
    help_ = _FIELD_HELP.get(field)
    msg = error["msg"].replace("valid tuple", "valid list")
    return f"{where}: {msg}, got {_short(error['input'])}" + (f"; write {help_}" if help_ else "")


# A spec is an object of flat fields; anything deeper is refused before the parser sees it, so
# the outcome never depends on the interpreter's recursion limit.
MAX_JSON_DEPTH = 8


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside string literals."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
