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
