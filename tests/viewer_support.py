"""Shared by the viewer tests: a real `ldcsf slide` output folder and a running viewer server."""

from __future__ import annotations

import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldcsf import create_model
from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
from ldcsf.wholeslide import SlideSettings, run_cohort
from ldcsf.viewer import OutputFolder, make_server, server_address
from ldcsf.wsi import open_slide, write_pyramidal_tiff

CMU = "slides/CMU-1-Small-Region.svs"
CMU_ID = "CMU-1-Small-Region"
MOVED_ID = "cmu-crop"  # a slide file moved away after the run
FAILED_ID = "glass"  # a slide the run failed on (no tissue)


@dataclass
class ViewerOutputs:
    out: Path  # the `ldcsf slide` output folder
    cmu: Path  # the real slide
    moved_to: Path  # folder the moved slide now lies in


def build_outputs(shared_data: Path, root: Path) -> ViewerOutputs:
    """Run the real pipeline with the micro model on the CMU slide, a crop of it, and bare glass."""
    model = create_model("ldcsf_swin_micro")
    checkpoint = save_checkpoint(root / "micro.pt", model,
                                 CheckpointMeta.for_model(model, thresholds=[0.5, 0.4, 0.6, 0.5], mpp=1.25))
    slides = root / "slides"
    slides.mkdir()
    with open_slide(shared_data / CMU) as slide:
        crop = slide.read_region((600, 1000), 0, (1024, 1024))
    write_pyramidal_tiff(slides / f"{MOVED_ID}.tif", crop, mpp=0.499, tile_size=256)
    write_pyramidal_tiff(slides / f"{FAILED_ID}.tif", np.full((512, 512, 3), 243, np.uint8), mpp=0.5, tile_size=256)
    out = root / "out"
    run_cohort([shared_data / CMU, slides / f"{MOVED_ID}.tif", slides / f"{FAILED_ID}.tif"], checkpoint, out,
               SlideSettings(batch_size=64, progress=False))
    moved_to = root / "moved"
    moved_to.mkdir()
    shutil.move(slides / f"{MOVED_ID}.tif", moved_to / f"{MOVED_ID}.tif")
    return ViewerOutputs(out=out, cmu=shared_data / CMU, moved_to=moved_to)


@contextmanager
def running_server(out: Path, slide_dirs=(), cache_bytes: int | None = None):
    """A viewer server on a free port of 127.0.0.1, serving in a thread; yields (server, base URL)."""
    kwargs = {} if cache_bytes is None else {"cache_bytes": cache_bytes}
    server = make_server(OutputFolder(out, slide_dirs), "127.0.0.1", 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, server_address(server).rstrip("/")
    finally:
        server.shutdown()
        server.server_close()
        server.viewer.close()
        thread.join(timeout=10)
