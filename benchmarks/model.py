"""Model benchmark: image-encoder forward time, parameters and FLOPs vs MONAI's default resnet18.

    .venv/bin/python benchmarks/model.py                 # CPU at 96³ and 128³, batch 1
    .venv/bin/python benchmarks/model.py --sizes 96 --repeats 5

Every medfuse ResNet encoder (cheap stride-2 stem, the presets' default) is timed in the same run
as ``monai.networks.nets.resnet18`` with its default stride-1 7³ stem, and the ratio is printed.
FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-add = 2 FLOPs).
The full ``chest_ct_fusion`` preset (image + report) is timed too. Then resnet18_3d at 128³ with 3
channels: ms per volume at batch 1 and 16, fp32, channels-last-3d and bf16 autocast
(``--compile`` adds ``torch.compile``), on the CPU and, when there is one, on a CUDA device
(without one it says "no CUDA device").
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger("benchmarks.model")


def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 1, sync: bool = False) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def encoders() -> dict[str, nn.Module]:
    from monai.networks.nets import resnet18

    from medfuse.registry import image_encoders

    nets: dict[str, nn.Module] = {
        "monai resnet18 (stride-1 7³ stem)": resnet18(
            spatial_dims=3, n_input_channels=1, feed_forward=False
        )
    }
    for depth in (10, 18, 34, 50):
        nets[f"resnet{depth}_3d (stride-2 stem)"] = image_encoders.create(f"resnet{depth}_3d")
    nets["resnet18_3d (space-to-depth stem)"] = image_encoders.create("resnet18_3d", stem="s2d")
    nets["unet_encoder_3d"] = image_encoders.create("unet_encoder_3d")
    return nets


def cpu_section(sizes: list[int], repeats: int) -> None:
    torch.manual_seed(0)
    nets = {k: v.eval() for k, v in encoders().items()}
    base_key = next(iter(nets))
    print(f"CPU: torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, 1 channel")
    header = f"{'model':38s} {'size':>5s} {'params':>8s} {'GFLOPs':>8s} {'ms':>9s} {'× faster':>9s}"
    for size in sizes:
        print(header)
        x = torch.randn(1, 1, size, size, size)
        base_ms = None
        for name, net in nets.items():
            with torch.inference_mode():
                flops = count_flops(lambda net=net, x=x: net(x))
                reps = max(1, repeats // 2) if name == base_key else repeats
                ms = time_ms(lambda net=net, x=x: net(x), reps)
            if base_ms is None:
                base_ms = ms
            print(
                f"{name:38s} {size:>4d}³ {params(net) / 1e6:>7.2f}M {flops / 1e9:>8.1f} "
                f"{ms:>9.1f} {base_ms / ms:>9.2f}"
            )
        print()


def preset_section(size: int, repeats: int) -> None:
    from medfuse.models.model import create_model

    model = create_model("chest_ct_fusion", preprocessing={"spatial_size": [size] * 3}).eval()
    x = torch.randn(1, model.preprocessing.in_channels, size, size, size)
    text = model.tokenize(
        ["FINDINGS: 9 mm nodule in the right upper lobe. No pleural effusion. Mild emphysema."]
    )
    with torch.no_grad():  # FlopCounterMode fails on MHA under inference_mode
        flops = count_flops(lambda: model(image=x, text=text))
        ms = time_ms(lambda: model(image=x, text=text), repeats)
    print(
        f"chest_ct_fusion (resnet18_3d + transformer + cross_attention), {size}³, 3 windows: "
        f"{params(model) / 1e6:.2f}M params, {flops / 1e9:.1f} GFLOPs, {ms:.1f} ms CPU"
    )


def variants_section(device: str, repeats: int, compile_: bool) -> None:
    """resnet18_3d (3 CT windows, as the presets) at 128³ on ``device``: ms per volume at batch 1
    and 16, fp32, channels-last-3d, bf16 autocast (+ ``torch.compile`` when asked), as ratios to
    fp32 batch 1 in the same run."""
    from medfuse.registry import image_encoders

    cuda = device == "cuda"
    torch.manual_seed(0)
    base = image_encoders.create("resnet18_3d", in_channels=3).to(device).eval()
    last = image_encoders.create("resnet18_3d", in_channels=3).to(device).eval()
    last.load_state_dict(base.state_dict())
    last = last.to(memory_format=torch.channels_last_3d)
    label = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"resnet18_3d, 3 channels, 128³ on {label}:")

    def runner(net: nn.Module, batch: int, channels_last: bool, bf16: bool):
        x = torch.randn(batch, 3, 128, 128, 128, device=device)
        if channels_last:
            x = x.to(memory_format=torch.channels_last_3d)

        def run():
            with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=bf16):
                return net(x)

        return run

    variants = [
        ("fp32, batch 1", base, 1, False, False),
        ("fp32, batch 16", base, 16, False, False),
        ("fp32 channels-last-3d, batch 16", last, 16, True, False),
        ("bf16 autocast channels-last-3d, batch 16", last, 16, True, True),
    ]
    if compile_:
        compiled = torch.compile(last)
        variants.append(("torch.compile bf16 channels-last-3d, batch 16", compiled, 16, True, True))
    first = None
    for name, net, batch, channels_last, bf16 in variants:
        # batch 16 is 7 s a pass on 2 CPU cores: one warm-up and one timed pass there
        reps, warm = (max(repeats, 10), 3) if cuda else ((repeats, 1) if batch == 1 else (1, 1))
        ms = time_ms(runner(net, batch, channels_last, bf16), reps, warm, sync=cuda) / batch
        first = first or ms
        print(f"  {name:46s} {ms:>9.2f} ms/volume  ÷ fp32 batch 1: {ms / first:.2f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-preset", action="store_true")
    ap.add_argument("--skip-variants", action="store_true", help="no batch-16 / bf16 runs")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow start)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cpu_section(args.sizes, args.repeats)
    if not args.skip_preset:
        preset_section(max(args.sizes), args.repeats)
    if not args.skip_variants:
        variants_section("cpu", args.repeats, args.compile)
    if torch.cuda.is_available():
        variants_section("cuda", args.repeats, args.compile)
    else:
        print("GPU: no CUDA device (skipped)")


if __name__ == "__main__":
    main()
