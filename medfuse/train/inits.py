"""Weight initialisations a training config can ask for (``model.init`` of the training YAML).

``model.init: {intensity_detectors: {thresholds: [2.4, 2.7], gain: 4.0}}`` runs
:func:`init_intensity_detectors` on the freshly built model's image encoder (the brain MR demo,
``configs/train/brain_mr_demo.yaml``); a resumed run's checkpoint replaces these weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["init_intensity_detectors"]


def init_intensity_detectors(
    encoder: Any, thresholds: Sequence[float] = (2.4, 2.7), gain: float = 4.0
) -> int:
    """Initialise a space-to-depth ``resnet10_3d`` so that it starts out seeing hyperintense
    voxels; returns the number of detector channels.

    A small focal lesion is a few voxels of the input, only ~1 z-unit brighter than white
    matter, and its contrast to the surrounding tissue is no larger than that of the normal
    anatomy: from random weights a small network trained for a few minutes does not find it.
    Here the stem's first ``8`` output channels start as one-voxel taps of the 2×2×2 block
    (one channel per block position) with batch-norm scale ``gain`` and shift ``-gain * t``
    (``t`` cycling through ``thresholds``, in units of the preprocessed input: z-score for MR):
    ``relu(gain * (x - t))``, non-zero only on voxels brighter than every normal tissue. Every
    residual branch starts at zero (its last batch-norm scale, the usual "zero-init residual"
    trick) and the 1×1 shortcut convolutions as identities, so the detector maps reach the
    (max-pooled) output unchanged. Training then changes all of these weights like any other.
    """
    import torch

    from ..errors import ConfigError

    if not thresholds:
        raise ConfigError("intensity detectors need at least one threshold")
    n = getattr(encoder, "net", None)
    conv1 = getattr(n, "conv1", None)
    if conv1 is None or getattr(encoder, "s2d", None) is None:
        raise ConfigError(
            "intensity detectors need a resnet10_3d image encoder with a space-to-depth stem",
            hint="image_encoder: {name: resnet10_3d, kwargs: {stem: s2d, ...}}",
        )
    bn1 = n.bn1
    block = int(conv1.weight.shape[1])
    if conv1.weight.shape[0] < block:
        raise ConfigError("intensity detectors need a space-to-depth stem at least 8 wide")
    k_mid = tuple(s // 2 for s in conv1.weight.shape[2:])
    with torch.no_grad():
        for k in range(block):
            t = float(thresholds[k % len(thresholds)])
            conv1.weight[k].zero_()
            conv1.weight[(k, k, *k_mid)] = 1.0
            bn1.weight[k] = gain
            bn1.bias[k] = -gain * t
        for name in ("layer1", "layer2", "layer3", "layer4"):
            for blk in getattr(n, name):
                blk.bn2.weight.zero_()
                if blk.downsample is not None:
                    conv = blk.downsample[0]
                    if conv.weight.shape[0] == conv.weight.shape[1]:
                        conv.weight.zero_()
                        for c in range(conv.weight.shape[0]):
                            conv.weight[(c, c, 0, 0, 0)] = 1.0
    return block
