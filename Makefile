# medfuse — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medfuse-installed
# The CPU wheel of torch lies on local disk; asking for plain `torch` would pull a 5 GB CUDA build.
TORCH  := torch==2.13.0
OUT    := out

.PHONY: setup demo test wheel-test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# The shipped workflows on the shipped sample cases (chest_ct_0003 has no report: it runs
# image-only; mr_sag_0001 is a sagittal T1 brain MR read by the brain MR demo model).
demo: $(STAMP)
	rm -rf $(OUT)/chest_ct_triage $(OUT)/brain_mr_research
	$(VENV)/bin/medfuse run workflows/chest_ct_triage.yaml --out $(OUT)/chest_ct_triage \
	    -i sample_cases/chest_ct_0001 -i sample_cases/chest_ct_0002 -i sample_cases/chest_ct_0003
	$(VENV)/bin/medfuse run workflows/brain_mr_research.yaml --out $(OUT)/brain_mr_research \
	    -i sample_cases/mr_sag_0001
	@echo
	@echo "demo outputs: $(OUT)/chest_ct_triage/<study>/ (prediction.json report.html report.pdf sr.dcm saliency/ fhir.json)"
	@echo "              $(OUT)/brain_mr_research/<study>/ (the same for the brain MR sample)"
	@echo "              $(OUT)/chest_ct_triage/status.jsonl lists each study, its input folder and its timings"

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

# The wheel, not the checkout: build it, install it beside the CPU torch in a fresh virtualenv,
# run the shipped workflow from an empty folder (.ci/wheel_test.sh; .ci/run calls it too).
wheel-test:
	PYTHON=$(PYTHON) TORCH=$(TORCH) bash .ci/wheel_test.sh

# Each script prints ratios measured in one run; add --record to append a row to docs/benchmarks.md.
bench: $(STAMP)
	$(PY) benchmarks/load.py
	$(PY) benchmarks/cold_start.py --repeats 1
	$(PY) benchmarks/gpu.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/report_labels.py
	$(PY) benchmarks/model.py
	$(PY) benchmarks/explain.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/complexity.py
	$(PY) benchmarks/end_to_end.py --repeats 1
	$(PY) benchmarks/exports.py --repeats 1 --no-stages
	$(PY) benchmarks/scaling.py --studies 4

lint: $(STAMP)
	$(VENV)/bin/ruff check medfuse tests benchmarks

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache

# Demo model (synthetic data only): train on CPU (seeded, one thread: ~25 min, plus the image-only
# and text-only models for the fusion targets the first time and after a cohort change, ~25 min),
# then ship it as medfuse/assets/models/chest_ct_demo (weights + tokenizer + card with calibration
# and metrics) and print what it reads in the reports (benchmarks/wording_shift.py).
DEMO_MODEL := medfuse/assets/models/chest_ct_demo
.PHONY: train-demo
train-demo: $(STAMP)
	$(VENV)/bin/medfuse train configs/train/chest_ct_demo.yaml --no-resume
	rm -rf $(DEMO_MODEL) && mkdir -p $(DEMO_MODEL)
	cp out/train/chest_ct_demo/model/card.json out/train/chest_ct_demo/model/weights.safetensors \
	   out/train/chest_ct_demo/model/tokenizer.json $(DEMO_MODEL)/
	$(PY) benchmarks/fusion_targets.py --fusion $(DEMO_MODEL) --record-card --write-doc docs/model_card.md
	$(PY) benchmarks/image_missing_auroc.py --record-card
	$(PY) benchmarks/wording_shift.py

# Brain MR demo model (synthetic data only): the one trainer on configs/train/brain_mr_demo.yaml
# (CPU, seeded, one torch thread), then the held-back MR test cohort and the sample case checked
# against the card's targets and recorded in the card (benchmarks/mr_targets.py; a missed target
# stops here), then shipped as medfuse/assets/models/brain_mr_demo (weights + tokenizer + card).
MR_DEMO_MODEL := medfuse/assets/models/brain_mr_demo
.PHONY: train-mr-demo
train-mr-demo: $(STAMP)
	$(VENV)/bin/medfuse train configs/train/brain_mr_demo.yaml --no-resume
	$(PY) benchmarks/mr_targets.py --model out/train/brain_mr_demo/model --record-card
	rm -rf $(MR_DEMO_MODEL) && mkdir -p $(MR_DEMO_MODEL)
	cp out/train/brain_mr_demo/model/card.json out/train/brain_mr_demo/model/weights.safetensors \
	   out/train/brain_mr_demo/model/tokenizer.json $(MR_DEMO_MODEL)/
