"""3D image encoders (registry ``image_encoders``) on MONAI backbones.

Every encoder maps a batch ``[B, C, X, Y, Z]`` to an :class:`ImageEncoding`: the last feature map
``[B, D, x, y, z]`` (what Grad-CAM differentiates, and the patch tokens that cross-attention
fusion attends to), a pooled vector ``[B, D]``, which images are present, and, for
``unet_encoder_3d`` with a decoder, segmentation logits at input resolution.

=================  ==============================================================================
``resnet10_3d``    MONAI ``ResNet`` (basic blocks 1-1-1-1) with a cheap stem
``resnet18_3d``    basic blocks 2-2-2-2
``resnet34_3d``    basic blocks 3-4-6-3
``resnet50_3d``    bottleneck blocks 3-4-6-3
``unet_encoder_3d``  MONAI ``BasicUNet`` encoder path; optional decoder for an auxiliary lesion mask
=================  ==============================================================================

Stems (``stem=``): ``"stride2"`` (default: first conv with stride 2, then max-pool, as the 2D
ResNet does; about 1/8 of the FLOPs of MONAI's default at 128³), ``"s2d"`` (space-to-depth: 2³
voxel blocks become channels, then a stride-1 3³ conv; the cheapest), ``"monai"`` (MONAI's
default stride-1 7³ conv, for comparison). ``width`` scales every stage (64 is the standard
ResNet; 8 makes a test-sized net). ``strides`` (of layer2, layer3, layer4; default 2, 2, 2)
set to 1 keep a finer last feature map — finer patch tokens for cross-attention and a finer
Grad-CAM — at a higher cost (e.g. ``[2, 1, 1]``: output stride 4 with the ``s2d`` stem);
``dilate=True`` then dilates the 3³ convolutions of every stage after a stride-1 one by the
stride given up so far (2, then 4: the receptive field of the strided net on the finer grid, as
in DeepLab);
``widths`` (four stage widths) replaces ``width``'s ``[w, 2w, 4w, 8w]``, e.g. to keep a
high-resolution last stage narrow. ``pool`` sets how the pooled vector is taken from the last
feature map: ``"mean"`` (default), ``"max"`` or ``"meanmax"`` (their sum; the maximum keeps small
focal findings that a mean over a fine grid dilutes). ``aux_maps`` > 0 adds a 1×1×1 conv on
the last feature map whose logits (``ImageEncoding.segmentation``, on the feature grid) the
trainer can fit to finding masks — dense supervision of where the findings are.
``aux_features=True`` also appends those map channels to the last feature map (``dim`` grows by
``aux_maps``): the fusion, the pooled vector and the heads then see the supervised finding
evidence directly (the map's spatial maximum says "a lesion is somewhere"), and Grad-CAM's
gradient reaches the feature map through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import image_encoders

__all__ = [
    "POOLS",
    "STEMS",
    "ImageEncoder",
    "ImageEncoding",
    "ResNet3DEncoder",
    "SpaceToDepth3d",
    "UNetEncoder3D",
    "global_pool",
    "image_encoder_from_config",
    "resnet10_3d",
    "resnet18_3d",
    "resnet34_3d",
    "resnet50_3d",
    "unet_encoder_3d",
]

STEMS = ("stride2", "s2d", "monai")


@dataclass
class ImageEncoding:
    """What every image encoder returns."""

    #: last feature map [B, D, x, y, z]
    features: Tensor
    #: [B, D] global average of ``features`` (zero for missing images)
    pooled: Tensor
    #: [B] bool, False where the image is missing
    present: Tensor
    #: segmentation logits [B, K, X, Y, Z] (encoders with a decoder), or auxiliary finding-map
    #: logits [B, K, x, y, z] on the feature grid (ResNets built with ``aux_maps``), else None
    segmentation: Tensor | None = None

    @property
    def dim(self) -> int:
        return int(self.pooled.shape[-1])

    @property
    def tokens(self) -> Tensor:
        """Patch tokens [B, N, D] (N = x*y*z, C order over the feature grid)."""
        return self.features.flatten(2).transpose(1, 2)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Feature grid size (x, y, z)."""
        return tuple(int(s) for s in self.features.shape[2:])  # type: ignore[return-value]


class ImageEncoder(nn.Module):
    """Base class: ``forward(x [B, C, X, Y, Z], present=None) -> ImageEncoding``."""

    #: registry name
    name: ClassVar[str] = ""
    #: output dimension D
    dim: int
    in_channels: int

    def __init__(self) -> None:
        super().__init__()
        self._init_kwargs: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        """JSON-able description: registry name and constructor arguments."""
        return {"name": self.name, "kwargs": dict(self._init_kwargs)}

    def feature_map(self, x: Tensor) -> Tensor:
        """The last feature map [B, D, x, y, z]."""
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 5:
            raise ConfigError(
                f"{self.name} takes [B, C, X, Y, Z] input, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ConfigError(
                f"{self.name} was built for {self.in_channels} input channel(s), got {x.shape[1]}",
                hint="the preprocessing config's CT windows set the channel count",
            )

    def forward(self, x: Tensor, present: Tensor | None = None) -> ImageEncoding:
        self._check_input(x)
        feats = self.feature_map(x)
        if present is None:
            present = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        aux = getattr(self, "aux_head", None)
        seg = aux(feats) if aux is not None else None
        if seg is not None and getattr(self, "aux_features", False):
            feats = torch.cat([feats, seg], 1)
        pooled = global_pool(feats, getattr(self, "pool", "mean"))
        pooled = pooled * present.to(feats.dtype).unsqueeze(-1)
        return ImageEncoding(feats, pooled, present.to(torch.bool), seg)


POOLS = ("mean", "max", "meanmax")


def global_pool(feats: Tensor, pool: str = "mean") -> Tensor:
    """[B, D, x, y, z] -> [B, D]: spatial mean, maximum, or their sum (``"meanmax"``: the
    maximum keeps a small focal finding that the mean dilutes over the whole grid)."""
    if pool == "mean":
        return feats.mean(dim=(2, 3, 4))
    mx = feats.amax(dim=(2, 3, 4))
    return mx if pool == "max" else mx + feats.mean(dim=(2, 3, 4))


class SpaceToDepth3d(nn.Module):
    """Fold each ``b``³ block of voxels into channels: [B, C, X, Y, Z] -> [B, C*b³, X/b, Y/b, Z/b]."""

    def __init__(self, block: int = 2):
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        b = self.block
        B, C, X, Y, Z = x.shape
        if X % b or Y % b or Z % b:
            raise ConfigError(f"space-to-depth needs sizes divisible by {b}, got {(X, Y, Z)}")
        x = x.reshape(B, C, X // b, b, Y // b, b, Z // b, b)
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)
        return x.reshape(B, C * b**3, X // b, Y // b, Z // b)


_RESNET_LAYERS = {
    10: ("basic", [1, 1, 1, 1]),
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
}


class ResNet3DEncoder(ImageEncoder):
    """MONAI ``ResNet`` body with a selectable stem; the classifier is dropped. Its registry
    name is ``resnet<depth>_3d`` (built by :func:`resnet18_3d` and its siblings)."""

    def __init__(
        self,
        depth: int = 18,
        *,
        in_channels: int = 1,
        width: int = 64,
        stem: str = "stride2",
        stem_kernel: int = 7,
        max_pool: bool = True,
        norm: str = "batch",
        strides: tuple[int, ...] | list[int] = (2, 2, 2),
        widths: tuple[int, ...] | list[int] | None = None,
        pool: str = "mean",
        aux_maps: int = 0,
        aux_features: bool = False,
        dilate: bool = False,
    ):
        super().__init__()
        from monai.networks.nets import ResNet

        if depth not in _RESNET_LAYERS:
            raise ConfigError(f"ResNet depth must be one of {sorted(_RESNET_LAYERS)}, got {depth}")
        if stem not in STEMS:
            raise ConfigError(f"stem must be one of {STEMS}, got {stem!r}")
        if width < 1 or in_channels < 1 or stem_kernel < 1:
            raise ConfigError("width, in_channels and stem_kernel must be positive")
        if norm not in ("batch", "instance", "group"):
            raise ConfigError(f"norm must be 'batch', 'instance' or 'group', got {norm!r}")
        strides = tuple(int(v) for v in strides)
        if len(strides) != 3 or any(v not in (1, 2) for v in strides):
            raise ConfigError(f"strides (of layer2..layer4) must be three of 1 or 2, got {strides}")
        if widths is not None:
            widths = [int(v) for v in widths]
            if len(widths) != 4 or min(widths) < 1:
                raise ConfigError(f"widths must be four positive channel counts, got {widths}")
        stage_widths = widths or [width, 2 * width, 4 * width, 8 * width]
        self._init_kwargs = {
            "in_channels": in_channels,
            "width": width,
            "stem": stem,
            "stem_kernel": stem_kernel,
            "max_pool": max_pool,
            "norm": norm,
        }
        if strides != (2, 2, 2):
            self._init_kwargs["strides"] = list(strides)
        if dilate:
            self._init_kwargs["dilate"] = True
        if widths is not None:
            self._init_kwargs["widths"] = list(widths)
        if pool not in POOLS:
            raise ConfigError(f"pool must be one of {POOLS}, got {pool!r}")
        if pool != "mean":
            self._init_kwargs["pool"] = pool
        self.pool = pool
        if int(aux_maps) < 0:
            raise ConfigError(f"aux_maps must be >= 0, got {aux_maps}")
        if int(aux_maps):
            self._init_kwargs["aux_maps"] = int(aux_maps)
        self.aux_maps = int(aux_maps)
        if aux_features and not self.aux_maps:
            raise ConfigError("aux_features=True needs aux_maps > 0 (the channels it appends)")
        if aux_features:
            self._init_kwargs["aux_features"] = True
        self.aux_features = bool(aux_features)
        self.depth = depth
        self.name = f"resnet{depth}_3d"  # type: ignore[misc]  (per instance: one class, 4 depths)
        self.in_channels = in_channels
        self.stem_kind = stem
        block, layers = _RESNET_LAYERS[depth]
        norm_arg: str | tuple = ("group", {"num_groups": 1}) if norm == "group" else norm
        net_in = in_channels * 8 if stem == "s2d" else in_channels
        self.net = ResNet(
            block,
            layers,
            stage_widths,
            spatial_dims=3,
            n_input_channels=net_in,
            conv1_t_size=3 if stem == "s2d" else stem_kernel,
            conv1_t_stride=2 if stem == "stride2" else 1,
            no_max_pool=not max_pool,
            feed_forward=False,
            norm=norm_arg,
        )
        self.net.fc = None
        dilation = 1  # the stride given up so far
        for name, stride in zip(("layer2", "layer3", "layer4"), strides, strict=True):
            layer = getattr(self.net, name)
            if stride == 1:  # MONAI builds these stages with stride 2: undo it in place
                for mod in (layer[0].conv1, *(layer[0].downsample or ())):
                    if isinstance(mod, nn.Conv3d):
                        mod.stride = (1, 1, 1)
                dilation *= 2
            if dilate and dilation > 1:
                for mod in layer.modules():
                    if isinstance(mod, nn.Conv3d) and mod.kernel_size == (3, 3, 3):
                        mod.dilation = mod.padding = (dilation,) * 3
        self.s2d = SpaceToDepth3d(2) if stem == "s2d" else None
        width_out = stage_widths[3] * (4 if block == "bottleneck" else 1)
        # auxiliary finding maps: a 1x1x1 conv on the last feature map, trained against
        # downsampled finding masks (the trainer's ``aux_maps`` section); with ``aux_features``
        # they are appended to the feature map that fusion and heads see
        self.aux_head = nn.Conv3d(width_out, self.aux_maps, 1) if self.aux_maps else None
        self.dim = width_out + (self.aux_maps if self.aux_features else 0)

    def feature_map(self, x: Tensor) -> Tensor:
        n = self.net
        if self.s2d is not None:
            x = self.s2d(x)
        x = n.act(n.bn1(n.conv1(x)))
        if not n.no_max_pool:
            x = n.maxpool(x)
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))


class UNetEncoder3D(ImageEncoder):
    """MONAI ``BasicUNet`` encoder path (features at 1/16 resolution); with ``seg_classes > 0``
    the decoder is kept and returns segmentation logits for an auxiliary lesion-mask loss.
    Input sizes must be divisible by 16."""

    name = "unet_encoder_3d"

    def __init__(
        self,
        *,
        in_channels: int = 1,
        features: tuple[int, ...] = (32, 32, 64, 128, 256, 32),
        seg_classes: int = 0,
        norm: str = "instance",
        dropout: float = 0.0,
    ):
        super().__init__()
        from monai.networks.nets import BasicUNet

        features = tuple(int(f) for f in features)
        if len(features) != 6 or min(features) < 1:
            raise ConfigError(f"features must be six positive channel counts, got {features}")
        if seg_classes < 0:
            raise ConfigError("seg_classes must be >= 0")
        norm_arg: tuple = ("instance", {"affine": True}) if norm == "instance" else (norm, {})
        self._init_kwargs = {
            "in_channels": in_channels,
            "features": list(features),
            "seg_classes": seg_classes,
            "norm": norm,
            "dropout": dropout,
        }
        self.in_channels = in_channels
        self.seg_classes = seg_classes
        self.net = BasicUNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=max(seg_classes, 1),
            features=features,
            norm=norm_arg,
            dropout=dropout,
        )
        if not seg_classes:
            for part in ("upcat_4", "upcat_3", "upcat_2", "upcat_1", "final_conv"):
                delattr(self.net, part)
        self.dim = features[4]

    def _encode(self, x: Tensor) -> list[Tensor]:
        if any(s % 16 for s in x.shape[2:]):
            raise ConfigError(
                f"unet_encoder_3d needs sizes divisible by 16, got {tuple(x.shape[2:])}"
            )
        n = self.net
        x0 = n.conv_0(x)
        x1 = n.down_1(x0)
        x2 = n.down_2(x1)
        x3 = n.down_3(x2)
        return [x0, x1, x2, x3, n.down_4(x3)]

    def feature_map(self, x: Tensor) -> Tensor:
        return self._encode(x)[-1]

    def forward(self, x: Tensor, present: Tensor | None = None) -> ImageEncoding:
        self._check_input(x)
        x0, x1, x2, x3, x4 = self._encode(x)
        if present is None:
            present = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        pooled = x4.mean(dim=(2, 3, 4)) * present.to(x4.dtype).unsqueeze(-1)
        seg = None
        if self.seg_classes:
            n = self.net
            u = n.upcat_1(n.upcat_2(n.upcat_3(n.upcat_4(x4, x3), x2), x1), x0)
            seg = n.final_conv(u)
        return ImageEncoding(x4, pooled, present.to(torch.bool), seg)


# Registry metadata ``tiny``: the keyword arguments that make the encoder test-sized (the
# ``*_tiny`` presets and the contract tests).
@image_encoders.register("resnet10_3d", tiny={"width": 8, "max_pool": False})
def resnet10_3d(**kwargs: Any) -> ResNet3DEncoder:
    """3D ResNet-10 (MONAI, basic blocks 1-1-1-1) with a cheap stem; see
    :class:`ResNet3DEncoder`."""
    return ResNet3DEncoder(10, **kwargs)


@image_encoders.register("resnet18_3d", tiny={"width": 8, "max_pool": False})
def resnet18_3d(**kwargs: Any) -> ResNet3DEncoder:
    """3D ResNet-18 (MONAI, basic blocks 2-2-2-2) with a cheap stem; see
    :class:`ResNet3DEncoder`."""
    return ResNet3DEncoder(18, **kwargs)


@image_encoders.register("resnet34_3d", tiny={"width": 4, "max_pool": False})
def resnet34_3d(**kwargs: Any) -> ResNet3DEncoder:
    """3D ResNet-34 (MONAI, basic blocks 3-4-6-3) with a cheap stem; see
    :class:`ResNet3DEncoder`."""
    return ResNet3DEncoder(34, **kwargs)


@image_encoders.register("resnet50_3d", tiny={"width": 4, "max_pool": False})
def resnet50_3d(**kwargs: Any) -> ResNet3DEncoder:
    """3D ResNet-50 (MONAI, bottleneck blocks 3-4-6-3) with a cheap stem; see
    :class:`ResNet3DEncoder`."""
    return ResNet3DEncoder(50, **kwargs)


@image_encoders.register("unet_encoder_3d", tiny={"features": (4, 4, 8, 8, 16, 4)})
def unet_encoder_3d(**kwargs: Any) -> UNetEncoder3D:
    """MONAI BasicUNet encoder path, optional segmentation decoder (see :class:`UNetEncoder3D`)."""
    return UNetEncoder3D(**kwargs)


#: Rebuild an encoder (untrained weights) from :meth:`ImageEncoder.config`
#: (:meth:`~medfuse.registry.Registry.from_config`).
image_encoder_from_config = image_encoders.from_config
