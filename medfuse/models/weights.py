"""Weights on disk: safetensors only, SHA-256 verified.

Pickle-based checkpoints (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) are refused: loading them can
run code. Convert a trusted one once with ``torch.load(path, weights_only=True)`` and
:func:`save_weights`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError

__all__ = ["load_weights", "save_weights", "sha256_file"]

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_weights(module: nn.Module, path: str | os.PathLike) -> str:
    """Write ``module.state_dict()`` as safetensors (atomically); returns the file's SHA-256."""
    from safetensors.torch import save_file

    from .._atomic import atomic_path

    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "producer": "medfuse"})
    return sha256_file(path)


def load_weights(
    module: nn.Module,
    path: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    strict: bool = True,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load safetensors weights into ``module``; :class:`ModelError` when the file is missing,
    is not safetensors, its SHA-256 differs from ``expected_sha256``, or keys/shapes differ."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelError(
            "pickle checkpoints are not loaded (they can run code)",
            path=p,
            hint="convert once with torch.load(..., weights_only=True) and save_weights()",
        )
    if not p.is_file():
        raise ModelError("weights file not found", path=p)
    if expected_sha256 is not None:
        got = sha256_file(p)
        if got != expected_sha256.lower():
            raise ModelError(
                f"weights checksum mismatch: expected sha256 {expected_sha256}, file has {got}",
                path=p,
                hint="the file is corrupt or is not the one the model card describes",
            )
    try:
        state = load_file(str(p), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"not a readable safetensors file: {exc}", path=p) from None
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(
        k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if bad_shape or (strict and (missing or unexpected)):
        raise ModelError(
            "weights do not match the model: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {bad_shape[:5]}",
            path=p,
        )
    module.load_state_dict(state, strict=strict)
    return module
