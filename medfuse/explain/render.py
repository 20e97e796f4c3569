"""Pictures of an explanation: orthogonal slices through the saliency peak with the overlay,
maximum-intensity projections (matplotlib, Agg, PNG bytes), and the report as HTML with
attribution highlighting. All report text is HTML-escaped.

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
    """PNG bytes: a row of axial / coronal / sagittal slices through the peak (overlay on
    ``image``, the model-grid input) and a row of maximum-intensity projections of the map."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    sal = saliency.normalized()
    peak = saliency.peak_model
    bg = np.zeros_like(sal) if image is None else np.asarray(image, dtype=np.float32)
    fig = Figure(figsize=(9, 6), dpi=dpi)
    axes = fig.subplots(2, 3)
    for ax, (name, b), (_, s) in zip(axes[0], _views(bg, peak), _views(sal, peak), strict=True):
        ax.imshow(b, cmap="gray", origin="lower")
        ax.imshow(
            np.ma.masked_less(s, 0.05), cmap=cmap, alpha=alpha, vmin=0, vmax=1, origin="lower"
        )
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    for ax, (name, s) in zip(axes[1], _mips(sal), strict=True):
        ax.imshow(s, cmap=cmap, vmin=0, vmax=1, origin="lower")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title or f"{saliency.label} — {saliency.method} (peak {list(peak)})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


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
