#!/usr/bin/env bash
# Test the wheel, not the checkout (`make wheel-test`; .ci/run calls it after `make test`):
#   1. build the sdist and, from it, the wheel (the build output must carry no deprecation warning);
#   2. check that the wheel holds the assets it needs and nothing from tests/ or ../shared
#      (.ci/check_dist.py);
#   3. install the wheel into a fresh virtual environment beside the CPU torch (as a user
#      would: `pip install torch==2.13.0`, then the wheel);
#   4. in an empty folder outside the repository: `medfuse cohort make`, `medfuse run
#      chest_ct_triage`, `python -m medfuse`, `medfuse workflows list|show`, and the notebook API.
# Uses pip's own configuration (here: the local package indexes; -qq hides its notes on them).
# Environment: PYTHON (python3), TORCH (torch==2.13.0), KEEP=1 keeps the work folder.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/medfuse-wheel.XXXXXX")
VENV=$WORK/venv
START=$(date +%s)
LAST=$START

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "wheel test FAILED (exit $rc); work folder: $WORK" >&2
    elif [[ ${KEEP:-0} == 1 ]]; then
        echo "work folder kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

step() {  # print the time the previous step took, then the next step's name
    local now
    now=$(date +%s)
    echo "  ($((now - LAST)) s)"
    LAST=$now
    echo "== $*"
}

echo "== fresh virtual environment in $WORK"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --quiet build

step "build the sdist and the wheel from it"
"$VENV/bin/python" -m build --outdir "$WORK/dist" "$SRC" >"$WORK/build.log" 2>&1 || {
    tail -n 40 "$WORK/build.log"
    exit 1
}
if grep -n -i -E "deprecat|SetuptoolsWarning|SetuptoolsDeprecationWarning" "$WORK/build.log"; then
    echo "the build output carries a deprecation warning (full log: $WORK/build.log)" >&2
    exit 1
fi
ls -l "$WORK/dist"

step "check the contents of the wheel and the sdist"
"$VENV/bin/python" "$SRC/.ci/check_dist.py" "$SRC" "$WORK/dist"

step "install $TORCH, then the wheel"
"$VENV/bin/python" -m pip install --quiet --quiet "$TORCH"
"$VENV/bin/python" -m pip install --quiet --quiet "$WORK"/dist/medfuse-*.whl
"$VENV/bin/python" -m pip check

step "run from an empty folder outside the repository"
RUN=$WORK/run
mkdir "$RUN"
cd "$RUN"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
unset PYTHONPATH
MEDFUSE=$VENV/bin/medfuse
where=$("$VENV/bin/python" -c "import medfuse; print(medfuse.__file__)")
case $where in
    "$VENV"/*) echo "medfuse imported from $where" ;;
    *) echo "medfuse imported from $where, not from the installed wheel" >&2; exit 1 ;;
esac
"$VENV/bin/python" -m medfuse --version
"$MEDFUSE" workflows list
"$MEDFUSE" workflows show chest_ct_triage >my_triage.yaml
"$MEDFUSE" cohort make --n 2 --seed 5 --out studies
"$MEDFUSE" run chest_ct_triage --input studies --out out
"$VENV/bin/python" -m medfuse run my_triage.yaml --input studies --out out --dry-run
"$VENV/bin/python" - <<'EOF'
import json
from pathlib import Path

records = [json.loads(line) for line in Path("out/status.jsonl").read_text().splitlines()]
assert len(records) == 2 and all(r["status"] == "ok" for r in records), records
for r in records:
    folder = Path("out") / r["key"]
    for name in ("prediction.json", "report.html", "report.pdf", "sr.dcm", "fhir.json"):
        assert (folder / name).is_file(), folder / name
    assert list((folder / "saliency").glob("*.dcm")), folder / "saliency"
print(f"medfuse run chest_ct_triage: {len(records)} studies ok")
EOF

step "the notebook API from the installed wheel"
"$VENV/bin/python" - <<'EOF'
from pathlib import Path

import medfuse
from medfuse.config import load_workflow

case = Path("studies/case_0001")
study = medfuse.read_study(case)
report = medfuse.read_report(case / "report.txt")
model = medfuse.load_model("chest_ct_demo")
pred = medfuse.predict(model, (study, report))
assert pred.findings and all(0.0 <= f.probability <= 1.0 for f in pred.findings)
written = medfuse.export(pred, Path("notebook_out"), formats=["json"])
assert written["json"] and all(p.is_file() for p in written["json"]), written
wf = load_workflow("chest_ct_triage")
assert wf.model == "chest_ct_demo", wf.model
print(f"notebook API: {study.volume.shape} volume, {len(pred.findings)} findings, json written")
EOF

step "done"
echo "wheel test passed in $(($(date +%s) - START)) s"
