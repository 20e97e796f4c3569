"""Are the outputs of ``make demo`` the same before and after a change? Byte for byte, except
timestamps, UIDs and wall-clock timings.

    python benchmarks/demo_identity.py [--base REV] [--base-tree DIR] [--out DIR]

(defaults: ``HEAD``, i.e. the uncommitted change, checked out at ``.bench/base_tree``)

Runs the shipped demo workflows (the Makefile's ``demo`` target: ``chest_ct_triage`` on the
three chest CT samples, ``brain_mr_research`` on the brain MR sample) twice, each in its own
``python -m medfuse run`` process:

* **base**: the checkout of ``--base`` at ``--base-tree`` (``git worktree add`` when missing),
  imported through ``PYTHONPATH`` so that it overrides the editable install (checked: the
  script prints where ``medfuse`` was imported from on each side);
* **new**: this working tree.

Both sides read the same sample cases and the same workflows and models: those of the base
commit, extracted once (``git archive``) and named by absolute path in copies of the workflow
files, so that a model re-shipped meanwhile cannot make the two sides differ.

Then every output file is compared:

* DICOM (``*.dcm``): the datasets (file meta included, less its group length, which follows
  the UIDs' lengths) with every UI / DA / TM / DT element blanked, at any depth; the pixel data
  are compared as they are stored.
* JSON / JSONL / HTML / text: ISO 8601 timestamps, DICOM UIDs (four or more dotted numbers) and
  UUIDs masked. Wall-clock measurements are masked too: the explanation's ``runtime_s`` (and
  its "methods: ...; 4.68 s" line in the HTML and PDF); the numbers of the ``timings_s``
  objects, whose keys are compared (less ``export_*`` in ``prediction.json``: the exporters no
  longer write their timings into the prediction; the study's status line keeps them).
* PDF: the document information and, per page, the decoded content stream (timestamps masked)
  and the bytes of every image.
* ``*.nii.gz``: the decompressed bytes (the gzip header holds the time it was written).
* anything else: the bytes.

Exit status 0 and ``IDENTICAL`` when every file matches and both sides wrote the same files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_cases"
#: the Makefile's demo target: (workflow, output folder, inputs)
DEMO = (
    ("chest_ct_triage", ["chest_ct_0001", "chest_ct_0002", "chest_ct_0003"]),
    ("brain_mr_research", ["mr_sag_0001"]),
)
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
UID = re.compile(r"(?<![\d.])\d+(\.\d+){3,}(?![\d.])")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
#: the explanation's run time in the HTML and PDF ("methods: gradcam, ...; 4.68 s")
RUNTIME = re.compile(r"(methods: [^;<>()]*; )\d+(\.\d+)? s")


def run(cmd: list[str], **kw: Any) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return res.stdout


def pinned_assets(base: str, dest: Path) -> Path:
    """The base commit's shipped workflows and models under ``dest`` (extracted again when the
    base commit's assets differ from those extracted last time)."""
    root = dest / "assets"
    tree = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", f"{base}:medfuse/assets"],
        capture_output=True, check=True, text=True,
    ).stdout.strip()  # fmt: skip
    marker = root / ".complete"
    if not marker.exists() or marker.read_text() != tree:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        data = subprocess.run(
            ["git", "-C", str(REPO), "archive", base, "medfuse/assets/models",
             "medfuse/assets/workflows"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(root, filter="data")
        marker.write_text(tree)
    return root / "medfuse" / "assets"


def workflow_copy(assets: Path, name: str, dest: Path) -> Path:
    """The base commit's workflow ``name`` with its model named by absolute path."""
    import yaml

    data = yaml.safe_load((assets / "workflows" / f"{name}.yaml").read_text())
    data["model"] = str(assets / "models" / data["model"])
    reports = data.get("reports") or {}
    for key in ("folder", "csv"):
        if reports.get(key):  # relative to the shipped workflow's folder
            reports[key] = str((assets / "workflows" / reports[key]).resolve())
    path = dest / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_side(root: Path, workflows: dict[str, Path], out: Path) -> str:
    """``make demo`` with the medfuse of ``root`` into ``out``; where medfuse came from."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    where = run([sys.executable, "-c", "import medfuse; print(medfuse.__file__)"], env=env,
                cwd=out.parent).strip()  # fmt: skip
    if not where.startswith(str(root)):
        raise SystemExit(f"medfuse of {root} not imported (got {where})")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name, cases in DEMO:
        cmd = [sys.executable, "-m", "medfuse", "run", str(workflows[name]), "--out",
               str(out / name)]  # fmt: skip
        for case in cases:
            cmd += ["-i", str(SAMPLES / case)]
        run(cmd, env=env, cwd=out.parent)
    return where


# -- normalised views -----------------------------------------------------------------------------
def mask_text(text: str) -> str:
    text = RUNTIME.sub(r"\1<seconds> s", text)
    return UID.sub("<uid>", UUID.sub("<uuid>", ISO_TIME.sub("<time>", text)))


def _json_view(obj: Any, *, drop_export_timings: bool) -> Any:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "runtime_s" and isinstance(v, (int, float)):
                out[k] = "<seconds>"
            elif k == "timings_s" and isinstance(v, dict):
                keys = sorted(v)
                if drop_export_timings:
                    keys = [t for t in keys if not t.startswith("export_")]
                out[k] = keys
            else:
                out[k] = _json_view(v, drop_export_timings=drop_export_timings)
        return out
    if isinstance(obj, list):
        return [_json_view(v, drop_export_timings=drop_export_timings) for v in obj]
    if isinstance(obj, str):
        return mask_text(obj)
    return obj


def json_view(path: Path) -> Any:
    drop = path.name == "prediction.json"
    if path.suffix == ".jsonl":
        return [
            _json_view(json.loads(line), drop_export_timings=drop)
            for line in path.read_text().splitlines()
            if line.strip()
        ]
    return _json_view(json.loads(path.read_text()), drop_export_timings=drop)


def dicom_view(path: Path) -> Any:
    import pydicom

    ds = pydicom.dcmread(path)

    def blank(item: Any) -> None:
        for elem in item:
            if elem.VR in ("UI", "DA", "TM", "DT"):
                elem.value = ""
            elif elem.VR == "SQ":
                for sub in elem.value:
                    blank(sub)

    blank(ds)
    blank(ds.file_meta)
    ds.file_meta.FileMetaInformationGroupLength = 0  # follows the length of the UIDs
    return ds.file_meta, ds


def pdf_view(path: Path) -> Any:
    from pypdf import PdfReader

    reader = PdfReader(path)
    meta = {k: mask_text(str(v)) for k, v in (reader.metadata or {}).items()}
    pages = []
    for page in reader.pages:
        contents = page.get_contents()
        text = contents.get_data().decode("latin-1") if contents is not None else ""
        pages.append((mask_text(text), [img.data for img in page.images]))
    return meta, pages


def view(path: Path) -> Any:
    name = path.name.lower()
    if name.endswith(".dcm"):
        return dicom_view(path)
    if name.endswith((".json", ".jsonl")):
        return json_view(path)
    if name.endswith((".html", ".txt", ".md", ".csv")):
        return mask_text(path.read_text())
    if name.endswith(".pdf"):
        return pdf_view(path)
    if name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    return path.read_bytes()


def files(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".medfuse.lock"
    }


def compare(a: Path, b: Path) -> tuple[int, list[str]]:
    """How many files match, and a line per difference."""
    problems = []
    fa, fb = files(a), files(b)
    for rel in sorted(fa - fb):
        problems.append(f"only in base: {rel}")
    for rel in sorted(fb - fa):
        problems.append(f"only in new: {rel}")
    same = 0
    for rel in sorted(fa & fb):
        if view(a / rel) == view(b / rel):
            same += 1
        else:
            problems.append(f"differs: {rel}")
    return same, problems


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base", default="HEAD", help="the commit to compare with")
    ap.add_argument("--base-tree", type=Path, default=REPO / ".bench" / "base_tree")
    ap.add_argument("--out", type=Path, default=REPO / ".bench" / "demo_identity")
    ap.add_argument("--compare-only", action="store_true", help="compare the last outputs")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.compare_only:
        if not (args.base_tree / "medfuse").is_dir():
            run(["git", "-C", str(REPO), "worktree", "add", str(args.base_tree), args.base])
        head = run(["git", "-C", str(args.base_tree), "rev-parse", "HEAD"]).strip()
        base_sha = run(["git", "-C", str(REPO), "rev-parse", args.base]).strip()
        if head != base_sha:
            raise SystemExit(f"{args.base_tree} is at {head}, not at {args.base}")
        assets = pinned_assets(args.base, out)
        wf_dir = out / "workflows"
        wf_dir.mkdir(exist_ok=True)
        workflows = {name: workflow_copy(assets, name, wf_dir) for name, _ in DEMO}
        for side, root in (("base", args.base_tree.resolve()), ("new", REPO)):
            where = run_side(root, workflows, out / side)
            print(f"{side}: medfuse from {where}")
    same, problems = compare(out / "base", out / "new")
    for line in problems:
        print(line)
    print(f"{same} files compared equal, {len(problems)} differences")
    print("IDENTICAL" if not problems else "DIFFERENT")
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
