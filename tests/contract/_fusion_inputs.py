"""Test-sized image and report encodings as fusions receive them (shared by the fusion and
imputer contract tests)."""

from __future__ import annotations

import torch

from medfuse.models.encoders.image import ImageEncoding
from medfuse.models.encoders.text import TextEncoding


def encodings(B: int = 3, di: int = 12, dt: int = 10, img_present=None, txt_present=None):
    """(image, report) encodings of ``B`` cases: a 2³ feature grid of ``di`` channels, 5 report
    tokens of ``dt`` (the first case's last two padded), with the given presence flags."""
    img_present = torch.tensor(img_present or [True] * B)
    txt_present = torch.tensor(txt_present or [True] * B)
    feats = torch.randn(B, di, 2, 2, 2, requires_grad=True)
    img = ImageEncoding(feats, feats.mean((2, 3, 4)), img_present)
    mask = torch.ones(B, 5, dtype=torch.bool)
    mask[0, 3:] = False
    tokens = torch.randn(B, 5, dt, requires_grad=True)
    txt = TextEncoding(tokens, mask, tokens.mean(1), [[(-1, -1)] * 5] * B, txt_present)
    return img, txt
