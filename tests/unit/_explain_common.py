"""Shared builders for the explanation tests: tiny models, a 32³-grid phantom case, and a model
that sees only one octant of its input."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

REPORT = "FINDINGS: 3 cm mass in the right upper lobe. No pleural effusion.\nIMPRESSION: Mass."


@functools.lru_cache(maxsize=1)
def phantom_case():
    """A chest phantom (48×48×32 voxels of 8 mm, LPS-ordered axial grid) with one 24 mm mass,
    and a parsed report; returns (case, lesion centre RAS mm, radius mm)."""
    from medfuse.synth.geometry import make_geometry
    from medfuse.synth.phantom import ChestPhantom, Lesion
    from medfuse.text.pipeline import parse_report
    from medfuse.types import Case, Volume

    geom = make_geometry((48, 48, 32), (8.0, 8.0, 8.0), center_lps=(0.0, 0.0, -180.0))
    les = Lesion(radius_mm=24.0, center_ijk=(15.0, 20.0, 16.0), kind="mass")
    ph = ChestPhantom(geom, seed=3, lesions=[les])
    vol = Volume(ph.volume(workers=1), geom.affine_ras, modality="CT")
    centre_lps = ph.lesion_centres_lps()[0]
    centre_ras = np.array([-centre_lps[0], -centre_lps[1], centre_lps[2]])
    return Case(vol, parse_report(REPORT), key="phantom"), centre_ras, 24.0


@functools.cache
def tiny_model(preset: str = "chest_ct_fusion_tiny"):
    """A tiny preset model (fixed seed), in eval mode."""
    import medfuse

    torch.manual_seed(0)
    return medfuse.create_model(preset).eval()


class OctantEncoder(nn.Module):
    """An image encoder that multiplies its input by an octant mask and then runs bias-free
    convolutions: everything it computes depends only on the octant ``x < X/2, y < Y/2,
    z >= Z/2``."""

    name = "octant_test"

    def __init__(self, in_channels: int = 1, size: int = 32, dim: int = 8):
        super().__init__()
        self.in_channels = in_channels
        self.dim = dim
        mask = torch.zeros(1, 1, size, size, size)
        h = size // 2
        mask[..., :h, :h, h:] = 1.0
        self.register_buffer("mask", mask)
        self.conv1 = nn.Conv3d(in_channels, dim, 3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv3d(dim, dim, 3, stride=2, padding=1, bias=False)
        self.cam_layer = self.conv2
        with torch.no_grad():  # positive weights: the output grows with the octant's intensity
            self.conv1.weight.abs_()
            self.conv2.weight.abs_()

    def config(self):
        return {"name": self.name, "kwargs": {}}

    def forward(self, x, present=None):
        from medfuse.models.encoders.image import ImageEncoding

        f = self.conv2(torch.relu(self.conv1(x * self.mask)))
        if present is None:
            present = torch.ones(x.shape[0], dtype=torch.bool)
        pooled = f.mean(dim=(2, 3, 4)) * present.to(f.dtype)[:, None]
        return ImageEncoding(f, pooled, present)


def octant_model():
    """Image-only MedfuseModel on an :class:`OctantEncoder`; its 'finding' logit is increasing
    in the octant's intensities (positive weights, linear head with positive weights)."""
    from medfuse.models.fusion import ConcatFusion
    from medfuse.models.heads import MultiLabelHead
    from medfuse.models.model import MedfuseModel

    torch.manual_seed(1)
    enc = OctantEncoder()
    fusion = ConcatFusion(enc.dim, 8, dim=8, dropout=0.0)
    # make the path linear and positive: identity-like MLP replaced by a single linear map
    fusion.mlp = nn.Sequential(nn.Linear(enc.dim + 8, 8))
    with torch.no_grad():
        fusion.mlp[0].weight.abs_()
    head = MultiLabelHead(8, labels=["finding"])
    with torch.no_grad():
        head.net[-1].weight.abs_()
    model = MedfuseModel(
        enc,
        None,
        fusion,
        {"diagnosis": head},
        preprocessing={"modality": "MR", "mr_normalization": "none", "spatial_size": [32, 32, 32]},
        name="octant_test",
    )
    return model.eval()


def octant_case():
    """A 32³ volume of uniform random intensities (identity affine, RAS)."""
    from medfuse.types import Case, Volume

    rng = np.random.default_rng(0)
    arr = rng.uniform(0.5, 1.0, size=(32, 32, 32)).astype(np.float32)
    return Case(Volume(arr, np.eye(4), modality="MR"))


def octant_share(saliency: np.ndarray) -> float:
    """Share of the positive saliency mass inside the octant."""
    s = np.maximum(np.asarray(saliency, dtype=np.float64), 0)
    h = s.shape[0] // 2
    tot = s.sum()
    return float(s[:h, :h, h:].sum() / tot) if tot > 0 else 0.0
