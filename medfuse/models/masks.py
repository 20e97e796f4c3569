"""Attention masks.

PyTorch's ``key_padding_mask`` argument (``nn.MultiheadAttention``, ``nn.TransformerEncoder``)
is checked with ``torch._check_with``, which imports ``torch.fx``'s symbolic shapes and with
them sympy the first time it runs: 0.35 s on an idle CPU, more than 1 s under load, paid by
every process's first prediction. The same padding given as an ``attn_mask`` (boolean, True =
not attended, one ``[query, key]`` plane per batch item and head) takes a path without that
check; PyTorch merges a key padding mask into exactly such a mask itself, so the attention is
the same.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["padding_attn_mask"]


def padding_attn_mask(pad: Tensor, heads: int, queries: int) -> Tensor:
    """``[B * heads, queries, S]`` boolean attention mask from a ``[B, S]`` key padding mask
    (True where the key is padding)."""
    b, s = pad.shape
    return pad[:, None, None, :].expand(b, heads, queries, s).reshape(b * heads, queries, s)
