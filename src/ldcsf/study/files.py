"""The names of the study outputs in a cohort folder (the viewer serves exactly these)."""

from __future__ import annotations

AGREEMENT_JSON = "agreement.json"
AGREEMENT_CSV = "agreement.csv"
BLAND_ALTMAN_PNG = "bland_altman.png"
SURVIVAL_JSON = "survival.json"
KM_PNG = "km.png"
COX_CSV = "cox.csv"
LOGRANK_CSV = "logrank.csv"
STUDY_HTML = "study.html"

STUDY_FILES = (AGREEMENT_JSON, AGREEMENT_CSV, BLAND_ALTMAN_PNG, SURVIVAL_JSON, KM_PNG, COX_CSV, LOGRANK_CSV,
               STUDY_HTML)
