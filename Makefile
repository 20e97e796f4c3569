# medfuse — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.medfuse-installed
# The CPU wheel of torch lies on local disk; asking for plain `torch` would pull a 5 GB CUDA build.
TORCH  := torch==2.13.0
SAMPLE := sample_cases/chest_ct_0001
OUT    := out

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(STAMP)
	mkdir -p $(OUT)
	$(VENV)/bin/medfuse info $(SAMPLE)
	$(VENV)/bin/medfuse info $(SAMPLE) --json > $(OUT)/chest_ct_0001_info.json
	$(VENV)/bin/medfuse convert $(SAMPLE) $(OUT)/chest_ct_0001.nii.gz
	$(VENV)/bin/medfuse convert sample_cases/mr_sag_0001 $(OUT)/mr_sag_0001.nii.gz
	$(VENV)/bin/medfuse parse-report $(SAMPLE)/report.txt
	$(VENV)/bin/medfuse parse-report $(SAMPLE)/report.txt --json > $(OUT)/chest_ct_0001_report.json
	@echo "demo outputs written to $(OUT)/"

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

# Each script prints ratios measured in one run; add --record to append a row to docs/benchmarks.md.
bench: $(STAMP)
	$(PY) benchmarks/load.py
	$(PY) benchmarks/report_labels.py
	$(PY) benchmarks/model.py
	$(PY) benchmarks/explain.py

lint: $(STAMP)
	$(VENV)/bin/ruff check medfuse tests benchmarks

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache

# Demo model (synthetic data only): train on CPU (~15 min, seeded), then ship it as
# medfuse/assets/models/chest_ct_demo (weights + tokenizer + card with calibration and metrics).
DEMO_MODEL := medfuse/assets/models/chest_ct_demo
.PHONY: train-demo
train-demo: $(STAMP)
	$(VENV)/bin/medfuse train configs/train/chest_ct_demo.yaml --no-resume
	rm -rf $(DEMO_MODEL) && mkdir -p $(DEMO_MODEL)
	cp out/train/chest_ct_demo/model/card.json out/train/chest_ct_demo/model/weights.safetensors \
	   out/train/chest_ct_demo/model/tokenizer.json $(DEMO_MODEL)/
	$(PY) benchmarks/fusion_targets.py --fusion $(DEMO_MODEL) --record-card --write-doc docs/model_card.md
