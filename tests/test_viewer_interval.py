"""The viewer's TSR panel shows each stroma fraction's 95 % interval, and old folders without it still open."""

from __future__ import annotations

import json
import shutil

import pytest

from test_viewer_browser import browser, open_slide_page  # noqa: F401  (browser is a fixture)
from viewer_support import CMU_ID, build_outputs, running_server

INTERVAL_KEYS = ("stroma_fraction_interval", "interval_method", "near_cutoff")


@pytest.fixture(scope="module")
def folders(shared_data, tmp_path_factory):
    """A fresh output folder, and a copy of its CMU slide as written before intervals existed."""
    new = build_outputs(shared_data, tmp_path_factory.mktemp("viewer-interval")).out
    old = tmp_path_factory.mktemp("viewer-old") / "out"
    shutil.copytree(new / CMU_ID, old / CMU_ID)
    info = json.loads((old / CMU_ID / "tsr.json").read_text())
    for part in ("tsr", "hotspot"):
        for key in INTERVAL_KEYS:
            (info[part] or {}).pop(key, None)
    (old / CMU_ID / "tsr.json").write_text(json.dumps(info))
    return new, old


def panel_rows(driver) -> dict[str, list[str]]:
    rows = driver.find_elements("css selector", "#tsr-table tbody tr")
    return {r.find_element("tag name", "th").text: [c.text for c in r.find_elements("tag name", "td")] for r in rows}


def test_tsr_panel_shows_the_interval_and_the_cut_off(browser, folders):  # noqa: F811
    new, old = folders
    info = json.loads((new / CMU_ID / "tsr.json").read_text())
    low, high = info["tsr"]["stroma_fraction_interval"]
    with running_server(new) as (_, url):
        open_slide_page(browser, url, CMU_ID)
        rows = panel_rows(browser)
    assert rows["stroma 95 % interval"][0] == f"{100 * low:.0f} % – {100 * high:.0f} %"
    assert rows["near the cut-off"][0] == ("yes: near the cut-off" if info["tsr"]["near_cutoff"] else "no")
    with running_server(old) as (_, url):
        open_slide_page(browser, url, CMU_ID)
        rows = panel_rows(browser)
    assert rows["stroma 95 % interval"] == ["–", "–"] and rows["near the cut-off"] == ["–", "–"]
    assert rows["stroma fraction"][0].endswith("%")  # the rest of the panel as before
