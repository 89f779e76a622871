"""`ldcsf demo --quick`: the whole chain on generated data, compared with the generated truth."""

from __future__ import annotations

import json


from ldcsf.cli.main import main


def test_quick_demo_trains_predicts_and_reports_against_truth(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    truth = json.loads((out / "slide" / "synthetic_slide.truth.json").read_text())
    tsr = json.loads((out / "prediction" / "synthetic_slide" / "tsr.json").read_text())
    assert (out / "train" / "model.pt").is_file()
    assert (out / "prediction" / "synthetic_slide" / "report.html").is_file()
    assert f"{truth['stroma_fraction']:.1%}" in printed and f"{truth['tsr']:.2f}" in printed
    predicted = tsr["tsr"]["stroma_fraction"]
    assert predicted is not None and 0.0 <= predicted <= 1.0
    assert f"{predicted:.1%}" in printed
    assert "report.html" in printed


def test_demo_rejects_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--checkpoint", str(tmp_path / "none.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ldcsf demo: error:") and "none.pt" in err and "\n" not in err
