"""Check a built wheel and sdist against the source tree (called by .ci/wheel_test.sh).

    python .ci/check_dist.py SRC DIST_DIR

The wheel must hold every file of SRC/medfuse/assets byte for byte (models, lexicon, shipped
workflows), py.typed, __main__.py, the licence and the ``medfuse`` entry point; it must hold
nothing but the ``medfuse`` package and its dist-info (no tests/, sample_cases/, workflows/ or
data from ../shared). The metadata must carry the SPDX licence expression and the documented
extras. The sdist must hold the same package files, pyproject.toml, README.md and LICENSE, and
nothing from tests/ or ../shared either.
Standard library only: it runs in the fresh virtual environment before medfuse is installed.
"""

from __future__ import annotations

import email.parser
import sys
import tarfile
import zipfile
from pathlib import Path

EXTRAS = ("test", "ray", "hf", "bench", "fuzz")
FORBIDDEN_PARTS = ("tests", "sample_cases", "shared", "benchmarks", "configs", "out")


def _asset_files(src: Path) -> dict[str, bytes]:
    assets = src / "medfuse" / "assets"
    return {
        p.relative_to(src).as_posix(): p.read_bytes()
        for p in sorted(assets.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def check_wheel(src: Path, wheel: Path) -> list[str]:
    problems: list[str] = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next((n.split("/")[0] for n in names if ".dist-info/" in n), "")
        for rel, data in _asset_files(src).items():
            if rel not in names:
                problems.append(f"missing asset {rel}")
            elif zf.read(rel) != data:
                problems.append(f"asset differs from the source: {rel}")
        for rel in ("medfuse/__init__.py", "medfuse/__main__.py", "medfuse/py.typed"):
            if rel not in names:
                problems.append(f"missing {rel}")
        workflows = [n for n in names if n.startswith("medfuse/assets/workflows/")]
        if not any(n.endswith("/chest_ct_triage.yaml") for n in workflows):
            problems.append("missing the shipped workflow chest_ct_triage.yaml")
        for name in sorted(names):
            top = name.split("/")[0]
            if top not in ("medfuse", dist_info):
                problems.append(f"unexpected top-level entry {name}")
            parts = name.split("/")
            if any(p in FORBIDDEN_PARTS for p in parts[:-1]):
                problems.append(f"file from outside the package: {name}")
            if "__pycache__" in parts or name.endswith(".pyc"):
                problems.append(f"compiled file: {name}")
        if f"{dist_info}/licenses/LICENSE" not in names:
            problems.append("missing the licence file in the dist-info")
        entry = zf.read(f"{dist_info}/entry_points.txt").decode()
        if "medfuse = medfuse.cli.entry:main" not in entry:
            problems.append("missing the medfuse console script")
        meta = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
    if meta.get("License-Expression") != "Apache-2.0":
        problems.append(f"License-Expression is {meta.get('License-Expression')!r}")
    if meta.get("License"):
        problems.append("legacy License field present (use the SPDX expression only)")
    extras = set(meta.get_all("Provides-Extra") or [])
    problems += [f"missing extra {e!r}" for e in EXTRAS if e not in extras]
    if not meta.get_all("Classifier"):
        problems.append("no classifiers")
    return problems


def check_sdist(src: Path, sdist: Path, wheel: Path) -> list[str]:
    problems: list[str] = []
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for rel in ("pyproject.toml", "README.md", "LICENSE", "PKG-INFO"):
        if rel not in names:
            problems.append(f"sdist is missing {rel}")
    with zipfile.ZipFile(wheel) as zf:
        package = {n for n in zf.namelist() if n.startswith("medfuse/")}
    problems += [f"sdist is missing {n}" for n in sorted(package - names)]
    problems += [
        f"sdist holds a file from outside the package: {n}"
        for n in sorted(names)
        if any(p in FORBIDDEN_PARTS for p in n.split("/")[:-1])
    ]
    return problems


def main(argv: list[str]) -> int:
    src, dist = Path(argv[0]).resolve(), Path(argv[1])
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
        return 1
    problems = check_wheel(src, wheels[0]) + check_sdist(src, sdists[0], wheels[0])
    for p in problems:
        print(f"dist check: {p}")
    if not problems:
        with zipfile.ZipFile(wheels[0]) as zf:
            n = len(zf.namelist())
        print(f"dist check: {wheels[0].name} ({n} files) and {sdists[0].name} are complete")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
