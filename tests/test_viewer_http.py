"""`ldcsf view` over HTTP: a real server on 127.0.0.1 serving a real `ldcsf slide` output folder."""

from __future__ import annotations

import http.client
import io
import json
import socket
import urllib.error
import urllib.request
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ldcsf.cli.main import main
from ldcsf.export.colors import label_colors
from ldcsf.viewer import OutputFolder
from ldcsf.viewer.deepzoom import Pyramid
from ldcsf.wsi import open_slide
from viewer_support import CMU_ID, FAILED_ID, MOVED_ID, build_outputs, running_server

LABELS = ["stroma", "necrosis", "non_tumor", "tumor"]


@pytest.fixture(scope="module")
def outputs(shared_data, tmp_path_factory):
    return build_outputs(shared_data, tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def base(outputs):
    with running_server(outputs.out) as (_, url):
        yield url


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def get_json(url: str) -> dict:
    status, kind, body = get(url)
    assert status == 200 and kind == "application/json", (url, status, body[:200])
    return json.loads(body)


def test_cohort_lists_every_slide_with_status(base):
    rows = {r["slide_id"]: r for r in get_json(f"{base}/api/cohort")}
    assert set(rows) == {CMU_ID, MOVED_ID, FAILED_ID}
    assert rows[CMU_ID]["status"] == "ok" and rows[CMU_ID]["finished"] and rows[CMU_ID]["n_tiles"] > 50
    assert 0 <= rows[CMU_ID]["stroma_fraction"] <= 1
    assert rows[FAILED_ID]["status"] == "failed" and "no tissue" in rows[FAILED_ID]["error"]
    assert "not found" in rows[MOVED_ID]["slide_error"] and rows[MOVED_ID]["finished"]
    status, kind, page = get(f"{base}/")
    assert status == 200 and kind.startswith("text/html") and b"cohort.js" in page


def test_slide_tiles_match_the_slide_at_full_and_low_resolution(base, outputs):
    info = get_json(f"{base}/api/slide/{CMU_ID}")
    assert info["has_image"] and info["dimensions"] == [2220, 2967] and info["labels"] == LABELS
    status, _, dzi = get(f"{base}/dz/{CMU_ID}/slide.dzi")
    assert status == 200 and b'Width="2220" Height="2967"' in dzi
    pyramid = Pyramid((2220, 2967))
    top = pyramid.level_count - 1
    with open_slide(outputs.cmu) as slide:
        for level, col, row in [(top, 4, 6), (top - 3, 0, 0)]:
            status, kind, body = get(f"{base}/dz/{CMU_ID}/slide_files/{level}/{col}_{row}.jpeg")
            assert status == 200 and kind == "image/jpeg"
            tile = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=float)
            (x, y, w, h), size = pyramid.box(level, col, row)
            assert tile.shape[:2] == (size[1], size[0])
            error = np.abs(tile - slide.read_box((x, y, w, h), size)).mean()
            shifted = np.abs(tile - slide.read_box((x + w // 16, y, w, h), size)).mean()
            assert error < 12 and error < shifted / 2  # JPEG and resampling differences only, and in place
            assert tile.std() > 5  # tissue, not a blank tile


def test_class_layer_paints_each_tile_in_its_label_colour(base, outputs):
    tiles = pd.read_parquet(outputs.out / CMU_ID / "tiles.parquet")
    pyramid = Pyramid((2220, 2967))
    top = pyramid.level_count - 1
    colours = label_colors(LABELS)
    checked = 0
    for tile in tiles.sample(5, random_state=0).itertuples():
        cx, cy = tile.x + tile.width // 2, tile.y + tile.height // 2
        col, row = cx // 254, cy // 254
        status, kind, body = get(f"{base}/dz/{CMU_ID}/classes_files/{top}/{col}_{row}.png")
        assert status == 200 and kind == "image/png"
        image = np.asarray(Image.open(io.BytesIO(body)).convert("RGBA"))
        (x0, y0, _, _), _ = pyramid.box(top, col, row)
        pixel = image[cy - y0, cx - x0]
        numbers = get_json(f"{base}/api/slide/{CMU_ID}/tile?x={cx}&y={cy}")["tile"]
        assert numbers["tile_id"] == tile.tile_id
        positive = [l for l in numbers["labels"] if l["pred"] == 1]
        if positive:
            best = max(positive, key=lambda l: l["prob"])["label"]
            assert tuple(pixel) == (*colours[best], 255)
        else:
            assert pixel[3] == 0
        assert numbers["labels"][0]["prob"] == pytest.approx(tile.prob_stroma)
        checked += 1
    assert checked == 5
    # background far from any tile: a transparent tile, and no tile under the point
    assert get_json(f"{base}/api/slide/{CMU_ID}/tile?x=5&y=5")["tile"] is None


@pytest.mark.parametrize("path, status", [
    (f"/dz/{CMU_ID}/slide_files/99/0_0.jpeg", 404),  # no such level
    (f"/dz/{CMU_ID}/slide_files/12/99_0.jpeg", 404),  # outside the slide
    (f"/dz/{CMU_ID}/slide_files/x/0_0.jpeg", 400),
    (f"/dz/{CMU_ID}/slide_files/12/-1_0.jpeg", 400),
    (f"/dz/{CMU_ID}/slide_files/12/0_0.gif", 400),
    (f"/dz/{CMU_ID}/slide_files/12/0_0.png", 404),
    (f"/dz/{CMU_ID}/nolayer_files/12/0_0.png", 404),
    (f"/dz/{CMU_ID}/nolayer.dzi", 404),
    ("/dz/no-such-slide/slide.dzi", 404),
    (f"/api/slide/{CMU_ID}/tile?x=abc&y=1", 400),
    (f"/api/slide/{CMU_ID}/tile?x=nan&y=1", 400),
    (f"/api/slide/{CMU_ID}/tile?y=1", 400),
    ("/api/slide/no-such-slide", 404),
    ("/slide/no-such-slide", 404),
    ("/static/%2e%2e/server.py", 404),
    ("/static/..%2f..%2fviewer%2fserver.py", 404),
    ("/static/%2fetc%2fpasswd", 404),
    ("/dz/..%2f..%2fetc/slide.dzi", 404),
    (f"/dz/{CMU_ID}/slide_files/12/%ff_0.jpeg", 400),
    ("/nothing/here", 404),
])
def test_bad_requests_get_a_status_and_one_line(base, path, status):
    code, kind, body = get(base + path)
    assert code == status, body
    text = body.decode("utf-8")
    assert "Traceback" not in text and "File \"" not in text
    if kind == "application/json":
        message = json.loads(text)["error"]
        assert message and "\n" not in message


def test_raw_path_traversal_cannot_leave_the_package(base, outputs):
    """http.client sends the path as written (no ../ clean-up): the server must still refuse."""
    host, port = base.removeprefix("http://").split(":")
    secret = outputs.out.parent / "micro.pt"
    for path in ["/static/../../../../../../etc/passwd", "/static/../server.py", f"/static/{secret}",
                 f"/static/../../../../../..{secret}", "/dz/../../micro.pt"]:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status == 404, path
        assert b"root:" not in body and b"import " not in body


def test_a_moved_slide_shows_its_error_and_its_maps(base, outputs):
    info = get_json(f"{base}/api/slide/{MOVED_ID}")
    assert not info["has_image"] and "not found" in info["slide_error"] and "--slides" in info["slide_error"]
    code, _, body = get(f"{base}/dz/{MOVED_ID}/slide.dzi")
    assert code == 404 and "not found" in json.loads(body)["error"]
    code, _, _ = get(f"{base}/dz/{MOVED_ID}/classes.dzi")
    assert code == 200  # the results stay visible without the image
    # the server keeps serving the other slides
    assert get(f"{base}/dz/{CMU_ID}/slide.dzi")[0] == 200
    # --slides says where the file is now
    with running_server(outputs.out, [outputs.moved_to]) as (_, url):
        info = get_json(f"{url}/api/slide/{MOVED_ID}")
        assert info["has_image"] and info["slide_error"] == ""
        assert get(f"{url}/dz/{MOVED_ID}/slide_files/10/0_0.jpeg")[0] == 200


def test_failed_slide_page_has_its_error(base):
    info = get_json(f"{base}/api/slide/{FAILED_ID}")
    assert info["status"] == "failed" and "no tissue" in info["error"]
    assert get(f"{base}/dz/{FAILED_ID}/classes.dzi")[0] == 404


def test_tile_cache_stays_within_its_byte_bound(outputs):
    limit = 200_000
    with running_server(outputs.out, cache_bytes=limit) as (server, url):
        pyramid = Pyramid((2220, 2967))
        top = pyramid.level_count - 1
        for col in range(9):
            for row in range(0, 12, 2):
                for layer, ext in (("slide", "jpeg"), ("prob-0", "png")):
                    assert get(f"{url}/dz/{CMU_ID}/{layer}_files/{top}/{col}_{row}.{ext}")[0] == 200
        assert 0 < server.viewer.cache.bytes <= limit


def test_area_fraction_columns_become_layers_and_hover_numbers(outputs, tmp_path):
    """Tile tables with per-label area fractions (area_<label>) get a heatmap each and show them on hover."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(outputs.out / CMU_ID, out / CMU_ID)
    tiles = pd.read_parquet(out / CMU_ID / "tiles.parquet")
    for i, name in enumerate(LABELS):
        tiles[f"area_{name}"] = np.linspace(0, 1, len(tiles)) if i == 0 else 0.0
    tiles.to_parquet(out / CMU_ID / "tiles.parquet", index=False)
    with running_server(out, [outputs.cmu.parent]) as (_, url):
        info = get_json(f"{url}/api/slide/{CMU_ID}")
        assert [l["key"] for l in info["layers"]][-4:] == ["area-0", "area-1", "area-2", "area-3"]
        last = tiles.iloc[-1]
        numbers = get_json(f"{url}/api/slide/{CMU_ID}/tile?x={last.x + 5}&y={last.y + 5}")["tile"]
        assert numbers["labels"][0]["area"] == pytest.approx(1.0) and numbers["labels"][1]["area"] == 0.0
        assert get(f"{url}/dz/{CMU_ID}/area-0_files/11/0_0.png")[0] == 200


# -- the command line ------------------------------------------------------------------------------
def test_not_an_output_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for folder, message in [(tmp_path, "not an `ldcsf slide` output folder"), (tmp_path / "nope", "no such folder"),
                            (tmp_path / "notes.txt", "not a folder")]:
        assert main(["view", str(folder), "--port", "0"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ldcsf view: error:") and message in err[0], err


def test_port_in_use_and_moved_slide_are_one_line_each(outputs, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["view", str(outputs.out), "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert err[0].startswith(f"ldcsf view: warning: {MOVED_ID}: slide file") and "moved since the run" in err[0]
    assert err[1] == (f"ldcsf view: error: port {port} on 127.0.0.1 is already in use; "
                      "pass --port with another number (--port 0 picks a free one)")


def test_a_slide_folder_on_its_own_can_be_viewed(outputs):
    folder = OutputFolder(outputs.out / CMU_ID)
    assert list(folder.entries) == [CMU_ID] and folder.entries[CMU_ID].slide_file == outputs.cmu.resolve()


def test_slide_ids_are_url_encoded(outputs, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(outputs.out / CMU_ID, out / "case 1 #a")
    data = json.loads((out / "case 1 #a" / "tsr.json").read_text())
    data["slide_id"] = "case 1 #a"
    (out / "case 1 #a" / "tsr.json").write_text(json.dumps(data))
    with running_server(out) as (_, url):
        info = get_json(f"{url}/api/slide/{quote('case 1 #a', safe='')}")
        assert info["slide_id"] == "case 1 #a" and info["has_image"]


def test_view_command_prints_the_address_serves_and_stops(outputs):
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as in a terminal: earlier tests in this worker may have left SIGINT ignored, which a child inherits.
    process = subprocess.Popen([sys.executable, "-m", "ldcsf.cli.main", "view", str(outputs.out), "--port", "0",
                                "--slides", str(outputs.moved_to)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert first.startswith("ldcsf view: 3 slide(s) (2 with results) from ")
        assert second.startswith("open http://127.0.0.1:") and second.rstrip().endswith("in a browser (Ctrl-C stops)")
        url = second.split()[1].rstrip("/")
        assert get(url + "/")[0] == 200
        assert get_json(f"{url}/api/slide/{MOVED_ID}")["has_image"]  # found through --slides
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"ldcsf view did not stop on Ctrl-C: {process.communicate()[1][-2000:]}") from None
    assert process.returncode == 0 and err.strip().splitlines()[-1] == "ldcsf view: stopped"


def test_another_file_under_the_slides_name_is_refused(outputs, tmp_path):
    from ldcsf.wsi import write_pyramidal_tiff

    write_pyramidal_tiff(tmp_path / f"{MOVED_ID}.tif", np.full((300, 500, 3), 200, np.uint8), mpp=0.499, tile_size=256)
    with running_server(outputs.out, [tmp_path]) as (_, url):
        info = get_json(f"{url}/api/slide/{MOVED_ID}")
        assert not info["has_image"] and "500 x 300 px" in info["slide_error"] and "different file" in info["slide_error"]
        assert get(f"{url}/dz/{MOVED_ID}/slide_files/0/0_0.jpeg")[0] == 404


# -- sub-tile maps of a model with an area head -------------------------------------------------------
@pytest.fixture(scope="module")
def area_outputs(shared_data, tmp_path_factory):
    """`ldcsf slide` with an untrained area-head micro model on a few CMU tiles: its folder has subtile_maps.npz."""
    import torch

    from ldcsf import create_model
    from ldcsf.checkpoint import CheckpointMeta, save_checkpoint
    from viewer_support import CMU

    root = tmp_path_factory.mktemp("viewer_area")
    torch.manual_seed(0)  # a map that differs inside most tiles
    model = create_model("ldcsf_swin_micro", area_head=True)
    checkpoint = save_checkpoint(root / "area.pt", model, CheckpointMeta.for_model(model, mpp=1.25))
    out = root / "out"
    assert main(["slide", str(shared_data / CMU), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--limit-tiles", "24", "--num-workers", "0", "--no-progress"]) == 0
    assert (out / CMU_ID / "subtile_maps.npz").is_file()
    return out


def dz_pixels(url: str, layer: str, points) -> list[tuple]:
    """RGBA of `layer` at level-0 points, read from the full-resolution Deep Zoom tiles."""
    pyramid = Pyramid((2220, 2967))
    top = pyramid.level_count - 1
    images, pixels = {}, []
    for px, py in points:
        key = (int(px) // 254, int(py) // 254)
        if key not in images:
            status, kind, body = get(f"{url}/dz/{CMU_ID}/{layer}_files/{top}/{key[0]}_{key[1]}.png")
            assert status == 200 and kind == "image/png"
            (x0, y0, _, _), _ = pyramid.box(top, *key)
            images[key] = (np.asarray(Image.open(io.BytesIO(body)).convert("RGBA")), x0, y0)
        image, x0, y0 = images[key]
        if image.shape[:2] == (1, 1):  # the blank tile of an empty region
            pixels.append(tuple(int(v) for v in image[0, 0]))
            continue
        pixels.append(tuple(int(v) for v in image[int(py) - y0, int(px) - x0]))
    return pixels


def test_subtile_layers_are_listed_only_with_subtile_maps_and_leave_the_old_layers_alone(area_outputs, tmp_path):
    import shutil

    plain = tmp_path / "out"
    shutil.copytree(area_outputs / CMU_ID, plain / CMU_ID)
    (plain / CMU_ID / "subtile_maps.npz").unlink()
    with running_server(area_outputs) as (_, url), running_server(plain) as (_, plain_url):
        info, plain_info = get_json(f"{url}/api/slide/{CMU_ID}"), get_json(f"{plain_url}/api/slide/{CMU_ID}")
        keys = [l["key"] for l in info["layers"]]
        plain_keys = [l["key"] for l in plain_info["layers"]]
        assert "classes-subtile" in keys and "classes-subtile" not in plain_keys
        assert keys == ["classes", "classes-subtile", *plain_keys[1:]]
        assert plain_keys[-4:] == ["area-0", "area-1", "area-2", "area-3"]  # from the area_<label> columns
        titles = {l["key"]: l["title"] for l in info["layers"]}
        assert titles["classes-subtile"] == "class map (sub-tile)" and titles["area-0"].endswith("(sub-tile)")
        with np.load(area_outputs / CMU_ID / "subtile_maps.npz") as saved:
            assert info["subtile"] == list(saved["maps"].shape[-2:]) and plain_info["subtile"] is None
        assert get(f"{plain_url}/dz/{CMU_ID}/classes-subtile.dzi")[0] == 404
        assert get(f"{plain_url}/dz/{CMU_ID}/classes-subtile_files/12/0_0.png")[0] == 404
        # the per-tile layers draw the same with or without the sub-tile maps
        top = Pyramid((2220, 2967)).level_count - 1
        for layer in ["classes", "prob-0", "prob-3"]:
            for level, col, row in [(top, 4, 2), (top, 5, 3), (top - 2, 0, 0)]:
                a, b = (get(f"{u}/dz/{CMU_ID}/{layer}_files/{level}/{col}_{row}.png") for u in (url, plain_url))
                assert a[0] == b[0] == 200 and a[2] == b[2], (layer, level, col, row)
        # without the file, the area heatmaps stay one colour per tile (from the columns)
        tiles = pd.read_parquet(plain / CMU_ID / "tiles.parquet")
        g = plain_info["grid"]
        tile = tiles.iloc[0]
        corner_x = g["left"] + (tile.col - tiles.col.min()) * g["stride_x"]
        corner_y = g["top"] + (tile.row - tiles.row.min()) * g["stride_y"]
        quarters = [(corner_x + g["stride_x"] * fx, corner_y + g["stride_y"] * fy) for fx in (0.25, 0.75) for fy in (0.25, 0.75)]
        assert len(set(dz_pixels(plain_url, "area-0", quarters))) == 1


def test_subtile_class_map_and_area_heatmaps_have_sub_cell_detail(area_outputs):
    from ldcsf.export.subtile_figures import MIN_DRAWN_AREA
    from ldcsf.viewer.layers import _heatmap_lut

    tiles = pd.read_parquet(area_outputs / CMU_ID / "tiles.parquet")
    with np.load(area_outputs / CMU_ID / "subtile_maps.npz") as saved:
        tile_ids, maps = saved["tile_id"], saved["maps"].astype(float)
        assert list(saved["labels"]) == LABELS
    n, _, h, w = maps.shape
    assert (h, w) != (1, 1)
    colours = label_colors(LABELS)
    with running_server(area_outputs) as (server, url):
        info = get_json(f"{url}/api/slide/{CMU_ID}")
        g = info["grid"]
        tile_maps = server.viewer.maps(server.viewer.slide(CMU_ID))
        assert tile_maps.cell_colors("classes-subtile").shape == (g["rows"] * h, g["cols"] * w, 4)
        assert tile_maps.cell_colors("area-0").shape == (g["rows"] * h, g["cols"] * w, 4)
        assert tile_maps.cell_colors("classes").shape == (g["rows"], g["cols"], 4)
        richer = 0
        for tile in tiles.itertuples():
            m = maps[list(tile_ids).index(tile.tile_id)]
            left = g["left"] + (tile.col - tiles.col.min()) * g["stride_x"]
            top = g["top"] + (tile.row - tiles.row.min()) * g["stride_y"]
            centres = [(left + (j + 0.5) * g["stride_x"] / w, top + (i + 0.5) * g["stride_y"] / h)
                       for i in range(h) for j in range(w)]
            sub = dz_pixels(url, "classes-subtile", centres)
            expected = [(*colours[LABELS[int(m[:, i, j].argmax())]], 255) if m[:, i, j].max() >= MIN_DRAWN_AREA
                        else (0, 0, 0, 0) for i in range(h) for j in range(w)]
            assert sub == expected, tile.tile_id
            per_tile = dz_pixels(url, "classes", centres)
            assert len(set(per_tile)) == 1
            richer += len(set(sub)) > 1
            # the area heatmap follows the sub-cell fractions of stroma
            lut = _heatmap_lut()
            assert dz_pixels(url, "area-0", centres) == [tuple(int(v) for v in lut[int(np.clip(m[0, i, j] * 255, 0, 255))])
                                                         for i in range(h) for j in range(w)]
            # hover numbers stay per tile, the same at every sub-cell
            for cx, cy in centres[:: max(1, len(centres) - 1)]:
                numbers = get_json(f"{url}/api/slide/{CMU_ID}/tile?x={cx}&y={cy}")["tile"]
                assert numbers["tile_id"] == tile.tile_id
                assert numbers["labels"][0]["area"] == pytest.approx(tile.area_stroma)
        assert richer >= len(tiles) // 3  # more colours inside one grid cell than the per-tile class map has
        # sub-cells of no tile stay transparent
        assert dz_pixels(url, "classes-subtile", [(5, 5)]) == [(0, 0, 0, 0)]


def test_tsr_json_of_earlier_versions_still_opens_with_the_renamed_keys(outputs, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(outputs.out / CMU_ID, out / CMU_ID)
    data = json.loads((out / CMU_ID / "tsr.json").read_text())
    area = data["tsr"]["tumor_area_mm2"]
    assert "tumour_area_mm2" not in json.dumps(data)  # written under the current name only
    data["tsr"]["tumour_area_mm2"] = data["tsr"].pop("tumor_area_mm2")  # as earlier versions wrote it
    data["hotspot_search"]["tumour_at_borders"] = data["hotspot_search"].pop("tumor_at_borders")
    (out / CMU_ID / "tsr.json").write_text(json.dumps(data))
    with running_server(out) as (_, url):
        info = get_json(f"{url}/api/slide/{CMU_ID}")
    assert info["tsr_detail"]["tumor_area_mm2"] == pytest.approx(area) and area > 0
    assert "tumour_area_mm2" not in info["tsr_detail"]
