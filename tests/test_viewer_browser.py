"""`ldcsf view` in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium,
against a real server on 127.0.0.1 serving a real `ldcsf slide` output folder."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from system_packages import require_chromium
from viewer_support import CMU_ID, FAILED_ID, MOVED_ID, build_outputs, running_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")

CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 800)


def chrome_flags(user_data_dir: str) -> list[str]:
    """Headless, and nothing that reaches beyond 127.0.0.1 or needs a GPU."""
    return ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={user_data_dir}", f"--window-size={WINDOW[0]},{WINDOW[1]}"]


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ldcsf-chromium-")
    options = webdriver.ChromeOptions()
    for flag in chrome_flags(profile):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def outputs(shared_data, tmp_path_factory):
    return build_outputs(shared_data, tmp_path_factory.mktemp("viewer-browser"))


@pytest.fixture(scope="module")
def server(outputs):
    with running_server(outputs.out) as (server, url):
        yield server, url


def wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def open_slide_page(driver, base: str, slide_id: str) -> None:
    driver.get(f"{base}/slide/{slide_id}")
    driver.execute_script("performance.setResourceTimingBufferSize(100000)")
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def tile_requests(driver, part: str) -> dict[int, int]:
    """Deep Zoom tiles the page fetched whose URL holds `part`: {level: count}, HTTP 200 only."""
    names = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.responseStatus === 200).map(e => e.name)")
    levels: dict[int, int] = {}
    for name in names:
        if part in name:
            level = int(name.split(part)[1].split("/")[0])
            levels[level] = levels.get(level, 0) + 1
    return levels


def item_opacity(driver, layer: str) -> float:
    return driver.execute_script(
        "const v = window.ldcsfViewer; for (let i = 0; i < v.world.getItemCount(); i++) {"
        "  const item = v.world.getItemAt(i); if (item.source.tilesUrl.endsWith(`/${arguments[0]}_files/`)) return item.getOpacity(); }"
        "return null;", layer)


def test_cohort_page_lists_sorts_and_filters_the_slides(browser, server):
    from selenium.webdriver.common.by import By

    _, base = server
    browser.get(base + "/")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cohort tbody tr")) == 3)
    rows = {r.get_attribute("data-slide"): r.text for r in browser.find_elements(By.CSS_SELECTOR, "#cohort tbody tr")}
    assert set(rows) == {CMU_ID, MOVED_ID, FAILED_ID}
    assert "failed" in rows[FAILED_ID] and "no tissue" in rows[FAILED_ID]
    assert "not found" in rows[MOVED_ID]
    # thumbnails of the slides that have an image load
    wait(browser, lambda d: d.execute_script(
        f"const i = document.querySelector('tr[data-slide=\"{CMU_ID}\"] img'); return i && i.complete && i.naturalWidth > 0"))
    # sort by tiles, twice: descending puts the failed slide (no tiles) last either way
    header = browser.find_element(By.CSS_SELECTOR, "th[data-key=n_tiles]")
    order = lambda: [r.get_attribute("data-slide") for r in browser.find_elements(By.CSS_SELECTOR, "#cohort tbody tr")]
    header.click()
    ascending = order()
    header.click()
    descending = order()
    assert ascending[-1] == descending[-1] == FAILED_ID and ascending[:2] == descending[:2][::-1]
    browser.find_element(By.ID, "filter").send_keys("failed")
    wait(browser, lambda d: order() == [FAILED_ID])
    assert browser.find_element(By.ID, "count").text == "1 of 3 slides"


def test_slide_page_loads_image_tiles_at_two_zoom_levels(browser, server):
    _, base = server
    open_slide_page(browser, base, CMU_ID)
    wait(browser, lambda d: d.execute_script("return window.ldcsfViewer.world.getItemAt(0).getFullyLoaded()"))
    overview = tile_requests(browser, f"/dz/{CMU_ID}/slide_files/")
    assert overview, "no slide tiles loaded"
    # zoom to full resolution (one slide pixel per screen pixel) on the tissue
    browser.execute_script(
        "const v = window.ldcsfViewer, item = v.world.getItemAt(0);"
        "v.viewport.zoomTo(item.imageToViewportZoom(1.0), item.imageToViewportCoordinates(1100, 1500), true);")
    # level 12 is full resolution for this 2220 x 2967 px slide
    wait(browser, lambda d: 12 in tile_requests(d, f"/dz/{CMU_ID}/slide_files/"))
    wait(browser, lambda d: d.execute_script("return window.ldcsfViewer.world.getItemAt(0).getFullyLoaded()"))
    assert max(overview) < 12
    # offline: every script, style sheet and image came from this server
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert names and all(name.startswith(base + "/") for name in names), [n for n in names if not n.startswith(base)]
    # the scale bar follows: at 1:1 on a 0.499 µm/px slide, 100 µm is about 200 screen pixels
    text = browser.find_element("id", "scalebar-text").text
    assert text.startswith(("50 µm", "20 µm")) and "20x" in text


def test_a_layer_toggles(browser, server):
    from selenium.webdriver.common.by import By

    _, base = server
    open_slide_page(browser, base, CMU_ID)
    assert browser.find_element(By.ID, "layer-classes").is_selected()
    wait(browser, lambda d: tile_requests(d, f"/dz/{CMU_ID}/classes_files/"))
    assert item_opacity(browser, "prob-0") == 0 and not tile_requests(browser, f"/dz/{CMU_ID}/prob-0_files/")
    box = browser.find_element(By.ID, "layer-prob-0")
    box.click()
    wait(browser, lambda d: tile_requests(d, f"/dz/{CMU_ID}/prob-0_files/"))
    assert item_opacity(browser, "prob-0") == pytest.approx(0.6)
    browser.find_element(By.ID, "layer-classes").click()
    assert item_opacity(browser, "classes") == 0
    box.click()
    assert item_opacity(browser, "prob-0") == 0


def test_hovering_a_tile_shows_its_numbers(browser, server, outputs):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _, base = server
    tiles = pd.read_parquet(outputs.out / CMU_ID / "tiles.parquet")
    tile = tiles.sort_values("tissue_fraction", ascending=False).iloc[len(tiles) // 3]
    cx, cy = int(tile.x + tile.width / 2), int(tile.y + tile.height / 2)
    open_slide_page(browser, base, CMU_ID)
    px, py = browser.execute_script(
        "const v = window.ldcsfViewer, item = v.world.getItemAt(0);"
        "const p = v.viewport.pixelFromPoint(item.imageToViewportCoordinates(arguments[0], arguments[1]), true);"
        "return [p.x, p.y];", cx, cy)
    container = browser.find_element(By.ID, "viewer")
    size = container.size
    ActionChains(browser).move_to_element_with_offset(container, int(px - size["width"] / 2), int(py - size["height"] / 2)) \
        .move_by_offset(1, 1).perform()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#tile-table tbody tr"), timeout=30)
    info = browser.find_element(By.ID, "tile-info").text
    assert f"tile {int(tile.tile_id)} " in info
    cells = [r.find_elements(By.TAG_NAME, "td") for r in browser.find_elements(By.CSS_SELECTOR, "#tile-table tbody tr")]
    shown = {c[0].text: (c[1].text, c[2].text) for c in cells}
    for label in ["stroma", "necrosis", "non_tumor", "tumor"]:
        assert shown[label] == (f"{tile[f'prob_{label}']:.3f}", "yes" if tile[f"pred_{label}"] == 1 else "no")
    assert browser.execute_script("return !!window.ldcsfViewer.getOverlayById('tile-highlight')")


def test_a_missing_slide_shows_an_error(browser, server):
    from selenium.webdriver.common.by import By

    _, base = server
    open_slide_page(browser, base, MOVED_ID)
    error = browser.find_element(By.ID, "page-error")
    assert error.is_displayed() and "not found" in error.text and "--slides" in error.text
    # its results are still drawn, without the image underneath
    assert browser.find_element(By.ID, "layer-classes").is_selected()
    assert browser.execute_script("return window.ldcsfViewer.world.getItemCount()") == 5  # 1 class map + 4 heatmaps
    # a slide id the folder does not have: a page that says so
    browser.get(f"{base}/slide/no-such-slide")
    assert "no slide 'no-such-slide'" in browser.find_element(By.ID, "page-error").text
    # a failed slide shows the run's error
    open_slide_page(browser, base, FAILED_ID)
    assert "no tissue" in browser.find_element(By.ID, "page-error").text
    # and the server is still serving
    with urllib.request.urlopen(f"{base}/api/cohort", timeout=30) as response:
        assert len(json.loads(response.read())) == 3
