"""`ldcsf agreement` and `ldcsf survival` on generated cohorts with known truths, and their error lines."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lifelines", reason="the study extra is not installed: pip install 'ldcsf[study]'")
pytest.importorskip("pingouin", reason="the study extra is not installed: pip install 'ldcsf[study]'")

from study_support import generated_survival, write_cohort  # noqa: E402

from ldcsf.cli.main import main  # noqa: E402

HAZARD_RATIO = 2.0


@pytest.fixture(scope="module")
def survival_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("survival")
    stroma, clinical = generated_survival(600, HAZARD_RATIO, seed=1)
    # The hotspot is more stroma-rich than the whole slide; survival follows the hotspot here.
    write_cohort(root / "cohort", np.clip(stroma - 15, 0, 100), hotspot_pct=stroma)
    clinical.to_csv(root / "clinical.csv", index=False)
    return root


def test_survival_recovers_the_generated_hazard_ratio(survival_cohort, capsys):
    cohort, clinical = survival_cohort / "cohort", survival_cohort / "clinical.csv"
    assert main(["survival", str(cohort), "--clinical", str(clinical), "--time", "months", "--event", "dead",
                 "--covariates", "age", "stage"]) == 0
    assert "log-rank" in capsys.readouterr().out
    result = json.loads((cohort / "survival.json").read_text())
    assert result["score"] == "hotspot" and result["slides"]["matched"] == 600
    category = {t["term"]: t for t in next(m for m in result["cox"] if m["model"] == "category")["terms"]}
    high = category["stroma_high"]
    assert high["hr_low"] < HAZARD_RATIO < high["hr_high"], high
    assert category["age"]["hr_low"] < 1.03 < category["age"]["hr_high"]
    assert {"stage_II", "stage_III"} <= set(category)  # text levels against stage I
    assert result["logrank"]["p"] < 1e-3
    per_10 = next(m for m in result["cox"] if m["model"] == "per_10pct")["terms"][0]
    assert per_10["term"] == "stroma_per_10pct" and per_10["hr"] > 1
    cox = pd.read_csv(cohort / "cox.csv")
    assert set(cox["model"]) == {"category", "per_10pct"} and cox["ph_test_p"].between(0, 1).all()
    assert (cohort / "km.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'id=survival' in (cohort / "study.html").read_text()


def test_whole_slide_score_misses_the_hotspot_effect_partly(survival_cohort, tmp_path):
    # The whole-slide stroma is 15 points below the hotspot: a different grouping, a different HR.
    assert main(["survival", str(survival_cohort / "cohort"), "--clinical", str(survival_cohort / "clinical.csv"),
                 "--time", "months", "--event", "dead", "--score", "whole-slide", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "survival.json").read_text())
    assert result["score"] == "whole-slide"
    assert result["kaplan_meier"]["stroma-high"]["n"] < 300


@pytest.fixture(scope="module")
def agreement_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("agreement")
    rng = np.random.default_rng(2)
    truth = rng.uniform(5, 95, 80)
    write_cohort(root / "cohort", np.clip(truth + rng.normal(0, 8, 80), 0, 100))
    to_step = lambda x: np.clip(np.round(x / 10) * 10, 0, 100)  # noqa: E731 - visual scores in 10 % steps
    reference = pd.DataFrame({"slide_id": [f"s{i:03d}" for i in range(80)],
                              "rater_a": to_step(truth + 5 + rng.normal(0, 5, 80)),  # scores 5 points high
                              "rater_b": to_step(truth + rng.normal(0, 5, 80)),
                              "rater_c": np.where(truth > 50, "stroma-high", "stroma-low")})
    reference.loc[3, "rater_b"] = None  # a slide one rater did not score
    reference.to_csv(root / "reference.csv", index=False)
    return root


def test_agreement_gives_icc_kappa_and_bland_altman(agreement_cohort, capsys):
    cohort = agreement_cohort / "cohort"
    assert main(["agreement", str(cohort), "--reference", str(agreement_cohort / "reference.csv")]) == 0
    assert "ICC2" in capsys.readouterr().out
    result = json.loads((cohort / "agreement.json").read_text())
    pairs = {p["pair"]: p for p in result["pairs"]}
    assert set(pairs) == {"ldcsf vs rater_a", "ldcsf vs rater_b", "ldcsf vs rater_c", "rater_a vs rater_b",
                          "rater_a vs rater_c", "rater_b vs rater_c"}
    a = pairs["ldcsf vs rater_a"]
    assert a["n"] == 80 and pairs["ldcsf vs rater_b"]["n"] == 79
    assert -9 < a["bias"] < -1  # ldcsf reads about 5 points below rater_a
    assert a["icc3"] > a["icc2"] > 0.7 and a["spearman"] > 0.85 and a["kappa_10pct_linear"] > 0.6
    assert "icc2" not in pairs["ldcsf vs rater_c"] and pairs["ldcsf vs rater_c"]["kappa_high_low"] > 0.6
    assert pairs["rater_a vs rater_b"]["kind"] == "inter-rater"
    assert result["raters_icc"]["raters"] == ["rater_a", "rater_b"]
    table = pd.read_csv(cohort / "agreement.csv")
    assert len(table) == 6 and table.loc[0, "icc2_low"] < table.loc[0, "icc2"] < table.loc[0, "icc2_high"]
    assert (cohort / "bland_altman.png").stat().st_size > 10_000
    assert "id=agreement" in (cohort / "study.html").read_text()


def _error(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_agreement_errors_are_one_line(agreement_cohort, tmp_path, capsys):
    cohort = str(agreement_cohort / "cohort")
    fractions = tmp_path / "fractions.csv"
    pd.DataFrame({"slide_id": ["s000", "s001", "s002"], "rater": [0.3, 0.55, 0.7]}).to_csv(fractions, index=False)
    assert "multiply them by 100" in _error(capsys, ["agreement", cohort, "--reference", str(fractions)])
    other = tmp_path / "other.csv"
    pd.DataFrame({"slide_id": ["x1", "x2"], "rater": [30, 70]}).to_csv(other, index=False)
    err = _error(capsys, ["agreement", cohort, "--reference", str(other)])
    assert str(other) in err and "none of its 2 slide ids matches" in err
    few = tmp_path / "few.csv"
    pd.DataFrame({"slide_id": ["s000", "s001", "s002"], "rater": [30, 60, 70]}).to_csv(few, index=False)
    assert "only 3 slide(s) match" in _error(capsys, ["agreement", cohort, "--reference", str(few)])


def test_survival_errors_are_one_line(survival_cohort, tmp_path, capsys):
    cohort = str(survival_cohort / "cohort")
    clinical = pd.read_csv(survival_cohort / "clinical.csv")
    base = ["survival", cohort, "--time", "months", "--event", "dead", "--out", str(tmp_path)]
    bad = tmp_path / "bad.csv"
    clinical.assign(dead=clinical["dead"] * 2).to_csv(bad, index=False)
    err = _error(capsys, [*base, "--clinical", str(bad)])
    assert str(bad) in err and "must be 0 (censored) or 1 (event)" in err and "'2'" in err
    clinical.assign(months=clinical["months"] - 200).to_csv(bad, index=False)
    assert "negative 'months'" in _error(capsys, [*base, "--clinical", str(bad)])
    clinical.assign(slide_id="p" + clinical["slide_id"]).to_csv(bad, index=False)
    assert "none of its 600 slide ids matches" in _error(capsys, [*base, "--clinical", str(bad)])
    assert "are stroma-low at the 96 % cut-off" in _error(capsys, [*base, "--clinical", str(survival_cohort / "clinical.csv"),
                                                                    "--cutoff", "96"])
    assert "no column 'grade'" in _error(capsys, [*base, "--clinical", str(survival_cohort / "clinical.csv"),
                                                   "--covariates", "grade"])


def test_a_missing_extra_names_the_install_command(survival_cohort, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lifelines", None)  # as if lifelines were not installed
    err = _error(capsys, ["survival", str(survival_cohort / "cohort"), "--clinical",
                          str(survival_cohort / "clinical.csv"), "--time", "months", "--event", "dead"])
    assert "pip install 'ldcsf[study]'" in err


def test_several_cohorts_are_read_together_and_ids_must_be_unique(agreement_cohort, tmp_path, capsys):
    whole = pd.read_csv(agreement_cohort / "cohort" / "cohort.csv")
    for name, part in (("a", whole.iloc[:50]), ("b", whole.iloc[50:])):
        (tmp_path / name).mkdir()
        part.to_csv(tmp_path / name / "cohort.csv", index=False)
    reference = str(agreement_cohort / "reference.csv")
    assert main(["agreement", str(tmp_path / "a"), str(tmp_path / "b" / "cohort.csv"), "--reference", reference,
                 "--out", str(tmp_path / "study")]) == 0
    assert json.loads((tmp_path / "study" / "agreement.json").read_text())["pairs"][0]["n"] == 80
    whole.iloc[:5].to_csv(tmp_path / "b" / "cohort.csv", index=False)  # s000 now in both
    assert "appears twice" in _error(capsys, ["agreement", str(tmp_path / "a"), str(tmp_path / "b"),
                                              "--reference", reference])
