"""The study statistics reproduce published and library reference results."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lifelines", reason="the study extra is not installed: pip install 'ldcsf[study]'")
pytest.importorskip("pingouin", reason="the study extra is not installed: pip install 'ldcsf[study]'")

from lifelines.datasets import load_rossi, load_waltons  # noqa: E402

from ldcsf.study.agreement import bland_altman, icc, pair_agreement, to_steps  # noqa: E402
from ldcsf.study.survival import cox_model, logrank  # noqa: E402

#: Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)


def test_icc_matches_shrout_and_fleiss_table():
    # Published: ICC(2,1) = .29, ICC(3,1) = .71, ICC(2,4) = .62 (Shrout & Fleiss 1979, Table 4).
    result = icc(*SHROUT_FLEISS.T)
    assert result["icc2"] == pytest.approx(0.29, abs=0.005)
    assert result["icc3"] == pytest.approx(0.71, abs=0.01)
    assert result["icc2k"] == pytest.approx(0.62, abs=0.005)
    assert result["icc2_low"] < result["icc2"] < result["icc2_high"]


def test_cox_on_rossi_gives_the_published_coefficients_and_ph_failures():
    # lifelines' documented fit of the Rossi recidivism data (also R's survival::coxph):
    # fin -0.379, age -0.057, prio 0.091; the PH check flags age and wexp.
    rossi = load_rossi()
    terms = [c for c in rossi.columns if c not in ("week", "arrest")]
    model = cox_model(rossi, "week", "arrest", terms, name="rossi")
    coef = {t["term"]: t for t in model["terms"]}
    assert coef["prio"]["coef"] == pytest.approx(0.0915, abs=5e-4)
    assert coef["fin"]["coef"] == pytest.approx(-0.379, abs=5e-4)
    assert coef["age"]["coef"] == pytest.approx(-0.0574, abs=5e-4)
    assert coef["fin"]["hr"] == pytest.approx(np.exp(-0.379), abs=1e-3)
    assert coef["fin"]["hr_low"] < coef["fin"]["hr"] < coef["fin"]["hr_high"] < 1.0
    assert model["concordance"] == pytest.approx(0.640, abs=1e-3)
    assert set(model["ph_violations"]) == {"age", "wexp"}


def test_logrank_on_waltons_gives_the_documented_statistic():
    # lifelines' documentation: miR-137 vs control, test statistic 122.25, p < 0.005.
    waltons = load_waltons().rename(columns={"T": "time", "E": "event"})
    result = logrank(waltons[waltons.group == "miR-137"], waltons[waltons.group == "control"])
    assert result["chi2"] == pytest.approx(122.25, abs=0.01)
    assert result["p"] < 1e-20


def test_bland_altman_and_kappa_on_a_known_offset():
    a = np.array([10, 20, 30, 40, 60, 70, 80, 90], float)
    b = a - 10 + np.array([1, -1, 1, -1, 1, -1, 1, -1])
    limits = bland_altman(a, b)
    assert limits["bias"] == pytest.approx(10.0)
    assert limits["sd_diff"] == pytest.approx(np.std([-1, 1, -1, 1, -1, 1, -1, 1], ddof=1))
    assert limits["loa_high"] - limits["loa_low"] == pytest.approx(2 * 1.96 * limits["sd_diff"])
    same = pair_agreement(a, a)
    assert same["icc2"] == pytest.approx(1.0) and same["kappa_high_low"] == 1.0 and same["kappa_10pct_linear"] == 1.0
    assert list(to_steps([4.9, 5.0, 54.9, 55.0, 100])) == [0, 1, 5, 6, 10]
