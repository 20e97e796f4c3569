"""Pictures of an explanation: orthogonal slices through the saliency peak with the overlay,
maximum-intensity projections (composed in numpy, titled by matplotlib's Agg, PNG bytes by
Pillow), and the report as HTML with attribution highlighting. All report text is HTML-escaped.

The model grid is RAS (the presets' preprocessing reorients to RAS), so axial slices are
``[:, :, k]``, coronal ``[:, j, :]`` and sagittal ``[i, :, :]``; axial and coronal views are
drawn in the radiological convention (patient right on the viewer's left).
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .explanation import Explanation, Saliency, TokenAttribution

__all__ = ["explanation_html", "report_html", "report_segments", "saliency_png"]


def _views(vol: np.ndarray, peak: tuple[int, int, int]) -> list[tuple[str, np.ndarray]]:
    i, j, k = peak
    # image rows = vertical screen axis; transpose so that the second axis runs upward
    return [
        (f"axial k={k}", vol[::-1, :, k].T),  # x: patient right on the left, y: anterior up
        (f"coronal j={j}", vol[::-1, j, :].T),  # superior up
        (f"sagittal i={i}", vol[i, :, :].T),  # anterior on the right, superior up
    ]


def _mips(vol: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [
        ("MIP axial", vol[::-1].max(axis=2).T),
        ("MIP coronal", vol[::-1].max(axis=1).T),
        ("MIP sagittal", vol.max(axis=0).T),
    ]


def saliency_png(
    saliency: Saliency,
    image: np.ndarray | None = None,
    *,
    alpha: float = 0.45,
    cmap: str = "jet",
    dpi: int = 100,
    title: str | None = None,
) -> bytes:
    """PNG bytes (9 × 6 in at ``dpi``): a row of axial / coronal / sagittal slices through the
    peak (the map where it is ≥ 0.05 of its peak, over ``image``, the model-grid input, in grey
    scaled to each slice's range) and a row of maximum-intensity projections of the map.

    The panels are composed in numpy (nearest neighbour, as ``imshow`` draws an upsampled
    image) into the titles drawn by matplotlib's Agg, and encoded by Pillow: 0.16 → 0.02 s per
    figure (six matplotlib axes cost most of the figures' share of an export)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    sal = saliency.normalized()
    peak = saliency.peak_model
    bg = np.zeros_like(sal) if image is None else np.asarray(image, dtype=np.float32)
    colors = colormaps[cmap]
    width, height = 9 * dpi, 6 * dpi
    top, caption = int(0.45 * dpi), int(0.3 * dpi)  # suptitle band; panel title band
    cell_w, cell_h = width // 3, (height - top) // 2
    fig = Figure(figsize=(9, 6), dpi=dpi, facecolor="white")
    label = title or f"{saliency.label} — {saliency.method} (peak {list(peak)})"
    fig.text(0.5, 1 - top * 0.6 / height, label, ha="center", va="baseline", fontsize=10)
    panels: list[tuple[int, int, np.ndarray]] = []
    for col, ((name, b), (_, s)) in enumerate(
        zip(_views(bg, peak), _views(sal, peak), strict=True)
    ):
        lo, hi = float(b.min()), float(b.max())
        grey = np.repeat(((b - lo) / (hi - lo) if hi > lo else np.zeros_like(b))[..., None], 3, -1)
        over = colors(s)[..., :3]
        rgb = np.where((s >= 0.05)[..., None], (1 - alpha) * grey + alpha * over, grey)
        panels.append((0, col, rgb))
        fig.text(
            (col + 0.5) / 3, 1 - (top + caption * 0.85) / height, name, ha="center", fontsize=9
        )
    for col, (name, s) in enumerate(_mips(sal)):
        panels.append((1, col, colors(np.clip(s, 0, 1))[..., :3]))
        y_text = 1 - (top + cell_h + caption * 0.85) / height
        fig.text((col + 0.5) / 3, y_text, name, ha="center", fontsize=9)
    agg = FigureCanvasAgg(fig)  # the titles on white; the panels go into the pixels between
    agg.draw()
    canvas = np.array(agg.buffer_rgba())[..., :3]
    for row, col, rgb in panels:
        pixels = _fit(rgb[::-1], cell_w - dpi // 10, cell_h - caption - dpi // 10)  # row 0 on top
        h, w = pixels.shape[:2]
        y0 = top + row * cell_h + caption + (cell_h - caption - h) // 2
        x0 = col * cell_w + (cell_w - w) // 2
        canvas[y0 : y0 + h, x0 : x0 + w] = pixels
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="png")
    return buf.getvalue()


def _fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` (floats in [0, 1]) as uint8 pixels, scaled by nearest neighbour to the largest
    size that fits ``width`` × ``height`` with square voxels."""
    h, w = rgb.shape[:2]
    scale = min(width / max(w, 1), height / max(h, 1))
    rows = (np.arange(max(1, round(h * scale))) / scale).astype(np.intp)
    cols = (np.arange(max(1, round(w * scale))) / scale).astype(np.intp)
    pixels = rgb[np.minimum(rows, h - 1)[:, None], np.minimum(cols, w - 1)[None, :]]
    return np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)


def report_segments(
    text: str, attribution: TokenAttribution | None
) -> list[tuple[str, float | None, float]]:
    """``text`` cut into consecutive ``(piece, score, strength)`` parts that join back to
    ``text``: ``score`` is the attribution of a highlighted span (None between spans) and
    ``strength`` its ``|score|`` relative to the largest one, in [0, 1]. Overlapping spans keep
    the first. The pieces are raw text: each renderer escapes them for its own markup."""
    spans = attribution.span_scores() if attribution is not None else []
    top = max((abs(v) for _, _, v in spans), default=0.0)
    out: list[tuple[str, float | None, float]] = []
    pos = 0
    for s, e, v in spans:
        if s < pos or s >= len(text):
            continue  # overlapping span: keep the first
        e = min(e, len(text))
        if s > pos:
            out.append((text[pos:s], None, 0.0))
        out.append((text[s:e], v, 0.0 if top == 0 else min(1.0, abs(v) / top)))
        pos = e
    if pos < len(text):
        out.append((text[pos:], None, 0.0))
    return out


def report_html(text: str, attribution: TokenAttribution | None) -> str:
    """The report as a ``<div>`` with each attributed span highlighted (green supports the label,
    red speaks against it; opacity ∝ |score|). Every piece of text is escaped."""
    if not text:
        return '<div class="medfuse-report"><em>(no report)</em></div>'
    parts: list[str] = []
    for piece, v, a in report_segments(text, attribution):
        if v is None:
            parts.append(html.escape(piece))
            continue
        rgb = "0,160,60" if v >= 0 else "220,40,40"
        parts.append(
            f'<span title="{html.escape(f"{v:+.4g}")}" style="background: rgba({rgb},{a * 0.8:.2f})">'
            f"{html.escape(piece)}</span>"
        )
    return (
        '<div class="medfuse-report" style="white-space: pre-wrap; font-family: monospace">'
        + "".join(parts)
        + "</div>"
    )


def explanation_html(expl: Explanation, *, max_labels: int = 3) -> str:
    """HTML for Jupyter: probabilities, modality contributions, and per label the saliency
    figure and the highlighted report."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(lab)}</td><td>{expl.probabilities.get(lab, float('nan')):.3f}</td>"
        + (
            f"<td>{expl.modality[lab].image:+.3f}</td><td>{expl.modality[lab].report:+.3f}</td>"
            if lab in expl.modality
            else "<td>–</td><td>–</td>"
        )
        + "</tr>"
        for lab in expl.labels
    )
    out = [
        f"<div class='medfuse-explanation'><h4>Explanation: {esc(expl.model_name)}</h4>",
        f"<p>methods: {esc(', '.join(expl.methods))}; modalities used: "
        f"{esc(', '.join(expl.modalities_used))}; {expl.runtime_s:.2f} s</p>",
        "<table><tr><th>label</th><th>p</th><th>image φ</th><th>report φ</th></tr>",
        rows,
        "</table>",
    ]
    ranked = sorted(expl.labels, key=lambda lab: -expl.probabilities.get(lab, 0.0))
    for lab in ranked[:max_labels]:
        out.append(f"<h5>{esc(lab)}</h5>")
        sal = expl.get_saliency(lab)
        if sal is not None:
            png = base64.b64encode(expl.figure_png(lab, sal.method)).decode("ascii")
            out.append(f"<img alt='{esc(sal.method)}' src='data:image/png;base64,{png}'/>")
        if expl.report_text:
            out.append(expl.report_html(lab))
    out.append("</div>")
    return "".join(out)
