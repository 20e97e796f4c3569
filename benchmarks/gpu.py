"""GPU rows of issue 27, each beside its target, or "not measured (no GPU)" without a CUDA device.

    python benchmarks/gpu.py [--repeats 20]

* **warm per-study** (target ≤ 0.5 s): ``benchmarks/end_to_end.py``'s in-batch study (512² × 300
  CT + report, Grad-CAM + modality Shapley, seven exports) with the workflow on ``cuda``, after
  one warm-up study; median of ``--studies``.
* **resnet18_3d bf16, batch 16, 128³** (target ≤ 1.5 ms per volume): inference-mode forward
  under bf16 autocast, channels-last-3d, three CT-window channels; median of ``--repeats``.
* **Grad-CAM ÷ forward** (target ≤ 3): :func:`medfuse.explain.cam.grad_cam_maps` on the
  ``chest_ct_fusion`` preset at 128³ against one inference forward pass, on the GPU.

Without a GPU the script prints the three rows as not measured and exits 0 (``make bench``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

ROWS = [
    ("warm per-study, CUDA", "≤ 0.5 s"),
    ("resnet18_3d bf16 batch 16 at 128³, CUDA", "≤ 1.5 ms/volume"),
    ("Grad-CAM ÷ forward, CUDA", "≤ 3×"),
]


def _median_ms(fn, repeats: int, warmup: int = 3) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def resnet_bf16_ms(repeats: int) -> float:
    import torch

    from medfuse.registry import image_encoders

    net = image_encoders.create("resnet18_3d", in_channels=3).cuda().eval()
    net = net.to(memory_format=torch.channels_last_3d)
    x = torch.randn(16, 3, 128, 128, 128, device="cuda").to(memory_format=torch.channels_last_3d)

    def run():
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16):
            net(x)

    return _median_ms(run, repeats) / 16


def gradcam_ratio(repeats: int) -> float:
    import torch

    import medfuse
    from medfuse.explain.cam import grad_cam_maps
    from medfuse.explain.context import ExplainContext

    torch.manual_seed(0)
    model = medfuse.create_model("chest_ct_fusion", preprocessing={"spatial_size": [128] * 3})
    model = model.cuda().eval()
    image = torch.rand(1, model.preprocessing.in_channels, 128, 128, 128, device="cuda")
    text = model.tokenize(["FINDINGS: 9 mm nodule in the right upper lobe."]).to("cuda")
    ctx = ExplainContext(model, image, text, model.labels)
    label = model.labels.index("lung_lesion")

    def forward():
        with torch.inference_mode():
            model(image=image, text=text)

    fwd = _median_ms(forward, repeats)
    cam = _median_ms(lambda: grad_cam_maps(ctx, [label]), repeats)
    return cam / fwd


def warm_study_s(studies: int) -> float:
    import tempfile

    import end_to_end

    end_to_end.WORKFLOW["run"] = {"device": "cuda"}
    study = end_to_end.make_study(REPO / ".bench", 512, 300)
    work = Path(tempfile.mkdtemp(prefix="medfuse-bench-gpu-"))
    end_to_end.medfuse_run(study, work / "warm")
    return statistics.median(
        end_to_end.medfuse_run(study, work / f"s{i}")["wall"] for i in range(studies)
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--studies", type=int, default=3)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        for name, target in ROWS:
            print(f"{name:<42} not measured (no GPU)   target {target}")
        return
    print(f"GPU: {torch.cuda.get_device_name(0)}")
    figures = [
        f"{warm_study_s(args.studies):.3f} s",
        f"{resnet_bf16_ms(args.repeats):.3f} ms/volume",
        f"{gradcam_ratio(args.repeats):.2f}×",
    ]
    for (name, target), got in zip(ROWS, figures, strict=True):
        print(f"{name:<42} {got:<22} target {target}")


if __name__ == "__main__":
    main()
