"""The picture of `ldcsf view` in the docs: a slide page in headless Chromium, one tile's numbers shown.

    python benchmarks/viewer_screenshot.py                       # the docs' picture
    python benchmarks/viewer_screenshot.py --checkpoint runs/pancancer-mini/model.pt

Runs `ldcsf slide` on the slide (the TCGA section from ../shared/data by default, whose file has
no µm/px: 3.4 is passed, as the docs say), serves the output with the viewer, and saves the page.
Without --checkpoint it uses an untrained `ldcsf_swin_micro` (seed 0): the layers then show the
viewer, not a meaningful tissue map. Needs chromium and chromium-driver (Debian) and selenium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "tests"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slide", type=Path, default=SHARED_DATA / "slides" / "TCGA-CR-7395-01A-01-TS1.svs")
    p.add_argument("--mpp", type=float, default=3.4, help="µm/px of the slide (default 3.4, for the TCGA section)")
    p.add_argument("--checkpoint", type=Path, default=None, help="a trained model (default: untrained micro model)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "viewer_slide.png")
    p.add_argument("--size", default="1400x1040", help="browser window, WxH")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import torch
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    from ldcsf import create_model
    from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
    from ldcsf.wholeslide import SlideSettings, run_cohort
    from ldcsf.wholeslide.pipeline import slide_id_for
    from ldcsf.utils.atomic import atomic_path
    from viewer_support import running_server

    args = parse_args(argv)
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="ldcsf-viewer-shot-"))
    try:
        checkpoint = args.checkpoint
        if checkpoint is None:
            torch.manual_seed(0)
            model = create_model("ldcsf_swin_micro")
            checkpoint = save_checkpoint(work / "micro.pt", model, CheckpointMeta.for_model(model, mpp=1.25))
        run_cohort([args.slide], checkpoint, work / "out", SlideSettings(mpp=args.mpp, batch_size=64, progress=True))
        slide_id = slide_id_for(args.slide)
        width, height = (int(v) for v in args.size.split("x"))
        options = webdriver.ChromeOptions()
        for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={work / 'chromium'}", f"--window-size={width},{height}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            with running_server(work / "out") as (_, base):
                driver.get(f"{base}/slide/{slide_id}")
                for _ in range(600):
                    if driver.execute_script("return document.body.dataset.ready === '1'"):
                        break
                    time.sleep(0.1)
                # keep the numbers of a tile near the hotspot centre on the panel (a click pins it)
                px, py = driver.execute_script(
                    "const box = document.getElementById('viewer').getBoundingClientRect();"
                    "const spot = document.getElementById('hotspot');"
                    "const c = spot ? spot.getBoundingClientRect() : box;"
                    "return [c.left + c.width / 2 - box.left, c.top + c.height / 2 - box.top];")
                viewer = driver.find_element("id", "viewer")
                size = viewer.size
                ActionChains(driver).move_to_element_with_offset(viewer, int(px - size["width"] / 2), int(py - size["height"] / 2)) \
                    .click().perform()
                for _ in range(600):
                    if driver.execute_script("return !!document.querySelector('#tile-table') && "
                                             "window.ldcsfViewer.world.getItemAt(0).getFullyLoaded()"):
                        break
                    time.sleep(0.1)
                time.sleep(1.0)
                with atomic_path(args.out) as tmp:
                    tmp.write_bytes(driver.get_screenshot_as_png())
        finally:
            driver.quit()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
