"""docs/notebooks/quickstart.ipynb runs top to bottom (nbclient) and shows the prediction."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "docs" / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="test extra nbformat not installed")
    nbclient = pytest.importorskip("nbclient", reason="test extra nbclient not installed")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("chest_ct_demo" in h for h in html), "the Prediction renders as HTML in Jupyter"
    assert any("image/png" in o.get("data", {}) for o in outputs), "the saliency figure is shown"
    assert (REPO / "out" / "quickstart" / "prediction.json").is_file()


@pytest.mark.slow
def test_own_cohort_notebook_executes():
    nbformat = pytest.importorskip("nbformat", reason="test extra nbformat not installed")
    nbclient = pytest.importorskip("nbclient", reason="test extra nbclient not installed")
    nb = nbformat.read(REPO / "docs" / "notebooks" / "own_cohort.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("Dataset: manifest.csv" in h for h in html), "the Dataset renders in Jupyter"
    assert any("Validation" in h for h in html), "the TrainResult renders"
    assert any("medfuse evaluation" in h for h in html), "the Evaluation renders"
    out = REPO / "out" / "own_cohort" / "eval"
    assert {"metrics.json", "metrics.html", "predictions.csv"} <= {p.name for p in out.iterdir()}
