"""Resumable, checksummed downloads against a local HTTP server that honours Range requests."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from ldcsf.data.download import DATASETS, download_dataset, download_file
from ldcsf.data.manifest import read_manifest


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        data = self.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        header = self.headers.get("Range")
        self.ranges.append(header)
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.files, _Handler.ranges = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _kather_like_zip() -> bytes:
    """A zip laid out like Kather 2016: top folder, one folder per class, slide id in the names."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w") as zf:
        for cls in ("01_TUMOR", "02_STROMA", "05_DEBRIS"):
            for i in range(3):
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(png, format="PNG")
                zf.writestr(f"Kather_texture_2016_image_tiles_5000/{cls}/1{i}_CRC-Prim-HE-0{i}_00{i}.tif_Row_1_Col_1.png",
                            png.getvalue())
    return buffer.getvalue()


def test_download_resumes_a_partial_file(server, tmp_path):
    _, base = server
    data = bytes(range(256)) * 4000
    _Handler.files["blob.bin"] = data
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(data[:300_000])
    out = download_file(f"{base}/blob.bin", dest, md5=hashlib.md5(data).hexdigest(), size=len(data), progress=False)
    assert out.read_bytes() == data and not (tmp_path / "blob.bin.part").exists()
    assert _Handler.ranges == ["bytes=300000-"]
    # a complete file is verified and kept, not fetched again
    download_file(f"{base}/blob.bin", dest, md5=hashlib.md5(data).hexdigest(), progress=False)
    assert len(_Handler.ranges) == 1


def test_checksum_mismatch_is_an_error_and_leaves_no_file(server, tmp_path):
    _, base = server
    _Handler.files["blob.bin"] = b"x" * 5000
    with pytest.raises(ValueError, match=r"blob\.bin: MD5 .* does not match the published 0+"):
        download_file(f"{base}/blob.bin", tmp_path / "blob.bin", md5="0" * 32, progress=False)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="HTTP 404"):
        download_file(f"{base}/absent.zip", tmp_path / "absent.zip", progress=False)


def test_download_dataset_extracts_and_imports(server, tmp_path, monkeypatch, caplog):
    _, base = server
    payload = _kather_like_zip()
    spec = DATASETS["kather2016"]
    _Handler.files[spec.filename] = payload
    monkeypatch.setitem(DATASETS, "kather2016", type(spec)(**{**spec.__dict__, "md5": hashlib.md5(payload).hexdigest()}))
    (tmp_path / (spec.filename + ".part")).write_bytes(payload[:1000])  # an interrupted earlier run
    manifest_path = download_dataset("kather2016", tmp_path, base_url=base, progress=False)
    assert _Handler.ranges == ["bytes=1000-"]
    manifest = read_manifest(manifest_path)
    assert len(manifest) == 9 and all(p.is_file() for p in manifest.image_paths())
    frame = manifest.frame
    assert frame.groupby("source_class").size().to_dict() == {"01_TUMOR": 3, "02_STROMA": 3, "05_DEBRIS": 3}
    assert (frame[frame.source_class == "01_TUMOR"]["tumor"] == 1).all()
    assert sorted(frame["group"].unique()) == ["CRC-Prim-HE-00", "CRC-Prim-HE-01", "CRC-Prim-HE-02"]
    assert frame.groupby("group")["split"].nunique().max() == 1
    assert not frame["path"].str.startswith("/").any()
    # the 9-image stand-in is not the published 5000: the log says so, naming the source
    assert "kather2016: 9 images in" in caplog.text and "expected 5000" in caplog.text


def test_base_url_from_environment(monkeypatch):
    monkeypatch.setenv("LDCSF_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/mirror/")
    assert DATASETS["nct-crc-he-100k"].url() == "http://127.0.0.1:9/mirror/NCT-CRC-HE-100K.zip"
    monkeypatch.delenv("LDCSF_DOWNLOAD_BASE_URL")
    assert DATASETS["nct-crc-he-100k"].url() == "https://zenodo.org/records/1214456/files/NCT-CRC-HE-100K.zip"
