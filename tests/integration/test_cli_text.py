"""`medfuse label-reports` and `medfuse parse-report` end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfuse.cli.main import app, main
from medfuse.text.lexicon import FINDING_CODES

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
IU_CSV = SHARED_DATA / "reports" / "iu_reports_dev.csv"

runner = CliRunner()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def reports_csv(tmp_path):
    p = tmp_path / "in.csv"
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["study", "findings", "impression"])
        w.writerow(
            ["s1", "No pneumothorax. Mild cardiomegaly.", "Possible right lower lobe pneumonia."]
        )
        w.writerow(["s2", "Lungs are clear.", "No acute disease."])
        w.writerow(["s3", "", ""])
        w.writerow(["s4", "History of pneumonia. Small left pleural effusion.", "Effusion."])
    return p


def test_help_lists_the_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    assert "label-reports" in res.output and "parse-report" in res.output


def test_label_reports_values(reports_csv, tmp_path):
    out = tmp_path / "labels.csv"
    res = runner.invoke(
        app,
        [
            "label-reports",
            str(reports_csv),
            "-t",
            "findings",
            "-t",
            "impression",
            "--id-column",
            "study",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = read_csv(out)
    assert list(rows[0]) == ["study", *FINDING_CODES]
    by_id = {r["study"]: r for r in rows}
    assert [r["study"] for r in rows] == ["s1", "s2", "s3", "s4"]
    s1 = by_id["s1"]
    assert (s1["pneumothorax"], s1["cardiomegaly"], s1["pneumonia"], s1["no_finding"]) == (
        "0",
        "1",
        "-1",
        "0",
    )
    assert s1["edema"] == ""  # not mentioned
    assert by_id["s2"]["no_finding"] == "1"
    assert all(v == "" for k, v in by_id["s3"].items() if k != "study")  # no text
    assert by_id["s4"]["pleural_effusion"] == "1" and by_id["s4"]["pneumonia"] == ""  # historical
    assert "4 reports" in res.output and "row(s) had no text" in res.output


def test_label_reports_single_column_and_row_ids(reports_csv, tmp_path):
    out = tmp_path / "labels.csv"
    res = runner.invoke(
        app, ["label-reports", str(reports_csv), "--text-column", "impression", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    rows = read_csv(out)
    assert [r["row"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0]["pneumonia"] == "-1" and rows[0]["cardiomegaly"] == ""


def test_label_reports_bad_column_is_a_clear_error(reports_csv, tmp_path):
    code = main(["label-reports", str(reports_csv), "-t", "report", "-o", str(tmp_path / "x.csv")])
    assert code == 2
    assert not (tmp_path / "x.csv").exists()
    code = main(
        [
            "label-reports",
            str(tmp_path / "missing.csv"),
            "-t",
            "report",
            "-o",
            str(tmp_path / "x.csv"),
        ]
    )
    assert code == 2


def test_parse_report_rich_and_json(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text(
        "FINDINGS: No pneumothorax. Heart size is mildly enlarged.\nIMPRESSION: Possible pneumonia."
    )
    res = runner.invoke(app, ["parse-report", str(p)])
    assert res.exit_code == 0, res.output
    for word in ("pneumothorax", "absent", "cardiomegaly", "present", "uncertain", "labels"):
        assert word in res.output
    res = runner.invoke(app, ["parse-report", str(p), "--json"])
    data = json.loads(res.output)
    assert data["labels"]["cardiomegaly"] == 1 and data["labels"]["pneumothorax"] == 0
    f = data["findings"][1]
    assert data["text"][f["start"] : f["end"]] == f["text"] == "Heart size is mildly enlarged"


def test_parse_report_csv_row_and_errors(reports_csv, tmp_path, capsys):
    res = runner.invoke(
        app, ["parse-report", str(reports_csv), "--row", "s4", "--id-column", "study", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["meta"]["id"] == "s4"
    assert main(["parse-report", str(tmp_path / "nope.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert main(["parse-report", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err


@pytest.mark.shared_data
@pytest.mark.skipif(
    not IU_CSV.is_file(),
    reason=f"real IU reports not found at {IU_CSV} (kept outside the repository)",
)
def test_label_reports_on_real_reports(tmp_path):
    out = tmp_path / "iu_labels.csv"
    args = [
        "label-reports", str(IU_CSV),
        "-t", "indication", "-t", "comparison", "-t", "findings", "-t", "impression",
        "--id-column", "id", "--out", str(out),
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = read_csv(out)
    src = read_csv(IU_CSV)
    assert [r["id"] for r in rows] == [r["id"] for r in src]
    for r in rows:
        assert all(r[c] in ("1", "0", "-1", "") for c in FINDING_CODES)
        assert r["no_finding"] in ("0", "1")
    cardiomegaly = sum(r["cardiomegaly"] == "1" for r in rows)
    gold = sum("Cardiomegaly" in r["problems"].split(";") for r in src)
    assert abs(cardiomegaly - gold) <= 5
