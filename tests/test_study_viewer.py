"""The viewer's cohort page shows the study section when `ldcsf agreement` / `ldcsf survival` ran."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lifelines", reason="the study extra is not installed: pip install 'ldcsf[study]'")
pytest.importorskip("pingouin", reason="the study extra is not installed: pip install 'ldcsf[study]'")

from study_support import generated_survival, write_cohort  # noqa: E402
from viewer_support import running_server  # noqa: E402

from ldcsf.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("study-viewer")
    stroma, clinical = generated_survival(120, 2.0, seed=3)
    folder = write_cohort(root / "cohort", stroma)
    clinical.to_csv(root / "clinical.csv", index=False)
    rater = np.clip(np.round(stroma / 10 + np.random.default_rng(0).normal(0, 0.7, 120)) * 10, 0, 100)
    pd.DataFrame({"slide_id": clinical["slide_id"], "pathologist": rater}).to_csv(root / "reference.csv", index=False)
    return root


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_study_routes_follow_the_files_in_the_folder(cohort):
    folder = cohort / "cohort"
    with running_server(folder) as (_, url):
        status, _, body = get(url + "/api/study")
        assert status == 200 and json.loads(body) == {"files": [], "agreement": None, "survival": None}
        assert main(["agreement", str(folder), "--reference", str(cohort / "reference.csv")]) == 0
        study = json.loads(get(url + "/api/study")[2])
        assert study["agreement"]["pairs"][0]["pair"] == "ldcsf vs pathologist" and study["survival"] is None
        status, kind, png = get(url + "/study/bland_altman.png")
        assert status == 200 and kind == "image/png" and png == (folder / "bland_altman.png").read_bytes()
        for name in ("cohort.csv", "..%2Fclinical.csv", "km.png"):  # not a study file, or not written yet
            status, kind, body = get(url + f"/study/{name}")
            assert status == 404 and kind == "application/json" and b"no such study file" in body


def test_cohort_page_shows_the_study_section(cohort):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not Path("/usr/bin/chromedriver").is_file():
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from test_viewer_browser import chrome_flags

    folder = cohort / "cohort"
    assert main(["survival", str(folder), "--clinical", str(cohort / "clinical.csv"), "--time", "months",
                 "--event", "dead"]) == 0
    profile = tempfile.mkdtemp(prefix="ldcsf-chromium-")
    options = webdriver.ChromeOptions()
    for flag in chrome_flags(profile):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        with running_server(folder) as (_, url):
            driver.get(url + "/")
            section = WebDriverWait(driver, 30).until(
                lambda d: d.find_element(By.ID, "study") if d.find_element(By.ID, "study").is_displayed() else None)
            text = section.text
            assert "ldcsf vs pathologist" in text and "log-rank p" in text and "stroma_high" in text
            loaded = driver.execute_script(
                "return [...document.querySelectorAll('#study img')].map(i => i.complete && i.naturalWidth > 0)")
            assert loaded == [True, True]
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
