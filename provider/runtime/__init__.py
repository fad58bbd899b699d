"""The PyTorch job runtime: deterministic setup, device and profile, and one function per kind.

Each kind takes parsed inputs and returns ``dict[str, numpy.ndarray]`` ready for
`marketplace.protocol.digest.digest`:

- `provider.runtime.matmul.matmul` — seeded n x n float32 matrix products (throughput bench);
- `provider.runtime.embed.embed` — all-MiniLM-L6-v2 sentence embeddings;
- `provider.runtime.torchscript.torchscript` — a TorchScript module on safetensors inputs;
- `provider.runtime.export.export` — a torch.export program (.pt2) on safetensors inputs.

This package root imports no torch, so the agent can catch `RuntimeJobError` cheaply; import
the kinds from their modules.
"""

from __future__ import annotations

from marketplace.protocol.errors import DepinError


class RuntimeJobError(DepinError, RuntimeError):
    """A job cannot run as specified: bad inputs, an unloadable module or unusable outputs."""


__all__ = ["RuntimeJobError"]
