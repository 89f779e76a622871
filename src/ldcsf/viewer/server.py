"""The viewer's web server: pages, Deep Zoom tiles of slides and map layers, and JSON numbers.

Built on the standard library's `ThreadingHTTPServer`: a local, single-user viewer needs routing
for a dozen fixed URLs and concurrent tile requests, nothing a framework would add is needed, and
ldcsf gains no dependency. Routes (slide ids are URL-encoded path segments):

    /                                   cohort page
    /slide/<id>                         slide page
    /static/<file>                      scripts, styles and OpenSeadragon (shipped in the package)
    /api/cohort                         one row per slide (JSON)
    /api/study                          the cohort's agreement/survival results, where written (JSON)
    /study/<file>                       a study output of the cohort folder (study.html, km.png, ...)
    /api/slide/<id>                     the slide's numbers, layers, hotspot and errors (JSON)
    /api/slide/<id>/tile?x=&y=          the tile under level-0 point (x, y) (JSON)
    /api/slide/<id>/thumbnail.jpg       a small picture of the slide
    /dz/<id>/<layer>.dzi                Deep Zoom descriptor ("slide" or a map layer)
    /dz/<id>/<layer>_files/<level>/<col>_<row>.<jpeg|png>

Nothing in a request becomes a file path except /static/, which is resolved and must stay inside
the static folder; slides are reached only by id, through the files the output folder names.
Every error is a status code with a one-line message, never a traceback.

Only requests addressed to this server are answered (`host_allowed`): a web page that points a
name of its own at 127.0.0.1 (DNS rebinding) gets 421 Misdirected Request, not the cohort.
Connections are HTTP/1.1 keep-alive with a socket timeout (a half-open connection frees its
thread) and a listen backlog sized for a viewer's bursts of tile requests.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import io
import json
import logging
import math
import mimetypes
import re
import socket
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image

from ..export.tables import read_tile_table
from ..study.files import AGREEMENT_JSON, STUDY_FILES, SURVIVAL_JSON
from ..wsi.readers import open_slide
from .cache import ByteLRU
from .deepzoom import Pyramid, SlideClosed, SlideTiles, TileNotFound
from .layers import SubtileMaps, TileMaps
from .outputs import OutputFolder, SlideEntry, read_tsr_json

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
#: Encoded tiles kept in memory, all slides together.
TILE_CACHE_BYTES = 96 * 2**20
#: Slides kept open, and tile tables kept loaded; the least recently used are released.
MAX_OPEN_SLIDES = 4
#: Decoded slide pixels each open slide keeps per pyramid level (the encoded-tile cache does the rest).
READER_CACHE_BYTES = 16 * 2**20
MAX_LOADED_TABLES = 8
THUMBNAIL_SIZE = 240
#: Seconds a connection may stay silent (mid-request or kept alive) before its thread lets it go.
SOCKET_TIMEOUT_S = 30
#: Connections waiting to be accepted: a slide page asks for dozens of tiles at once (the standard
#: library's 5 overflowed and stalled bursts for 1-3 s).
LISTEN_BACKLOG = 128
#: Host names a server on a loopback address answers to, besides the address it was given.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Addresses that listen on every network interface.
ALL_INTERFACES = ("0.0.0.0", "::", "")
_TILE_NAME = re.compile(r"^(\d{1,7})_(\d{1,7})\.(jpeg|png)$")
_BLANK_PNG: bytes | None = None


class HTTPProblem(Exception):
    """An answer other than 200: status and a one-line message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SlideView:
    """What the server knows about one slide; files are opened on first use and released when idle."""

    def __init__(self, entry: SlideEntry) -> None:
        self.entry = entry
        self.info: dict | None = None
        self.info_error = ""
        if entry.finished:
            try:
                self.info = read_tsr_json(entry.folder)
            except ValueError as err:  # a damaged record: this slide is shown as failed, naming the file
                self.info_error = str(err)
                entry.status, entry.error, entry.damaged = "failed", self.info_error, True
        dims = self.info.get("dimensions") if self.info else None
        self.pyramid = Pyramid(tuple(dims)) if dims else None
        self.open_error = entry.slide_error

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"]) if self.info else []


class Viewer:
    """The slides of one output folder, with bounded caches of open slides, tables and tiles."""

    def __init__(self, output: OutputFolder, cache_bytes: int = TILE_CACHE_BYTES) -> None:
        self.output = output
        self.slides = {slide_id: SlideView(entry) for slide_id, entry in output.entries.items()}
        self.cache = ByteLRU(cache_bytes)
        self._open: OrderedDict[str, SlideTiles] = OrderedDict()
        self._tables: OrderedDict[str, TileMaps] = OrderedDict()
        self._lock = threading.Lock()

    def slide(self, slide_id: str) -> SlideView:
        view = self.slides.get(slide_id)
        if view is None:
            raise HTTPProblem(404, f"no slide {slide_id!r} in {self.output.root}")
        return view

    # -- resources, opened lazily and released least recently used first --------------------------
    def tiles(self, view: SlideView) -> SlideTiles:
        slide_id = view.entry.slide_id
        with self._lock:
            if slide_id in self._open:
                self._open.move_to_end(slide_id)
                return self._open[slide_id]
            if view.open_error:
                raise HTTPProblem(404, view.open_error)
            try:
                reader = open_slide(view.entry.slide_file, mpp=(view.info or {}).get("mpp"))
            except (OSError, ValueError) as err:
                view.open_error = f"cannot open the slide: {err}"
                raise HTTPProblem(404, view.open_error) from None
            if view.info and tuple(reader.dimensions) != tuple(view.info["dimensions"]):
                reader.close()
                view.open_error = (f"{view.entry.slide_file}: {reader.dimensions[0]} x {reader.dimensions[1]} px, but the "
                                   f"results are for a slide of {view.info['dimensions'][0]} x {view.info['dimensions'][1]} px "
                                   "(a different file under the same name?)")
                raise HTTPProblem(404, view.open_error)
            reader.set_cache_bytes(READER_CACHE_BYTES)
            tiles = self._open[slide_id] = SlideTiles(reader)
            while len(self._open) > MAX_OPEN_SLIDES:
                self._open.popitem(last=False)[1].close()
            return tiles

    def maps(self, view: SlideView) -> TileMaps:
        if view.info is None:
            raise HTTPProblem(404, view.info_error or f"{view.entry.slide_id}: no results (status {view.entry.status})")
        slide_id = view.entry.slide_id
        with self._lock:
            if slide_id in self._tables:
                self._tables.move_to_end(slide_id)
                return self._tables[slide_id]
        try:
            subtile = SubtileMaps.read(view.entry.folder)
        except ValueError as err:  # the per-tile layers still draw
            log.warning("%s", err)
            subtile = None
        if not (view.entry.folder / "tiles.parquet").is_file():
            written = "tiles.parquet" in (view.info.get("files") or ["tiles.parquet"])
            why = "removed since the run?" if written else "not written: the run's --outputs left out parquet"
            raise HTTPProblem(404, f"{view.entry.folder / 'tiles.parquet'}: no tile table ({why}); "
                                   "the map layers are drawn from it")
        try:
            table = read_tile_table(view.entry.folder / "tiles.parquet")
            maps = TileMaps(table, view.labels, view.info.get("thresholds"), subtile)
        except (OSError, ValueError, KeyError) as err:
            raise HTTPProblem(500, f"{view.entry.folder / 'tiles.parquet'}: cannot read the tile table ({err})") from None
        with self._lock:
            self._tables[slide_id] = maps
            while len(self._tables) > MAX_LOADED_TABLES:
                self._tables.popitem(last=False)
        return maps

    def close(self) -> None:
        with self._lock:
            for tiles in self._open.values():
                tiles.close()
            self._open.clear()

    # -- answers -------------------------------------------------------------------------------
    def cohort(self) -> list[dict]:
        return [view.entry.summary() | {"slide_error": view.open_error,
                                        "reliability_note": (view.info or {}).get("reliability_note", "")}
                for view in self.slides.values()]

    def study(self) -> dict:
        """The study results of `ldcsf agreement` / `ldcsf survival` in the folder (None where not run)."""
        out: dict = {"files": [name for name in STUDY_FILES if (self.output.root / name).is_file()]}
        for key, name in (("agreement", AGREEMENT_JSON), ("survival", SURVIVAL_JSON)):
            out[key] = json.loads((self.output.root / name).read_text(encoding="utf-8")) if name in out["files"] else None
        return out

    def study_file(self, name: str) -> bytes:
        # Only the fixed names the study commands write: nothing in the address becomes a path.
        if name not in STUDY_FILES or not (self.output.root / name).is_file():
            raise HTTPProblem(404, f"no such study file: {name} (run `ldcsf agreement` or `ldcsf survival`)")
        return (self.output.root / name).read_bytes()

    def slide_info(self, slide_id: str) -> dict:
        view = self.slide(slide_id)
        out = view.entry.summary()
        out["has_image"] = False
        if view.entry.slide_file is not None and not view.open_error:
            try:
                tiles = self.tiles(view)
                out["has_image"] = True
                out["dimensions"] = list(tiles.reader.dimensions)
                out["slide_mpp"] = tiles.reader.mpp
            except HTTPProblem:
                pass
        out["slide_error"] = view.open_error
        out["results_error"] = view.info_error
        if view.info is not None:
            info = view.info
            out.update({
                "dimensions": info["dimensions"], "mpp": info.get("mpp"), "labels": info["labels"],
                "thresholds": info.get("thresholds"), "tsr_detail": info.get("tsr"), "hotspot": _hotspot(info.get("hotspot")),
                "hotspot_note": (info.get("hotspot_search") or {}).get("note", ""),
                "label_summary": info.get("label_summary"), "reliable": info.get("reliable", True),
                "reliability_note": info.get("reliability_note", ""),
            })
            try:
                out.update(self.maps(view).describe())
            except HTTPProblem as problem:
                out["results_error"] = str(problem)
        elif out.get("slide_mpp"):
            out["mpp"] = out["slide_mpp"]
        return out

    def tile_numbers(self, slide_id: str, query: dict) -> dict:
        view = self.slide(slide_id)
        x, y = _number(query, "x"), _number(query, "y")
        return {"tile": self.maps(view).tile_at(x, y)}

    def thumbnail(self, slide_id: str) -> bytes:
        view = self.slide(slide_id)

        def make() -> bytes:
            picture = self._read(view, lambda tiles: tiles.thumbnail(THUMBNAIL_SIZE))
            buffer = io.BytesIO()
            picture.convert("RGB").save(buffer, format="JPEG", quality=85)
            return buffer.getvalue()

        return self.cache.get_or_make((slide_id, "thumbnail"), make)

    def dzi(self, slide_id: str, layer: str) -> str:
        view = self.slide(slide_id)
        if layer == "slide":
            return self.tiles(view).dzi()
        self._check_layer(view, layer)
        return view.pyramid.dzi("png")

    def dz_tile(self, slide_id: str, layer: str, level: int, col: int, row: int, fmt: str) -> tuple[bytes, str]:
        view = self.slide(slide_id)
        if layer == "slide":
            if fmt != "jpeg":
                raise HTTPProblem(404, "slide tiles are .jpeg")
            try:
                self.tiles(view).pyramid.check(level, col, row)
            except TileNotFound as err:
                raise HTTPProblem(404, str(err)) from None
            return self.cache.get_or_make((slide_id, layer, level, col, row), lambda: self._slide_jpeg(view, level, col, row)), "image/jpeg"
        if fmt != "png":
            raise HTTPProblem(404, "layer tiles are .png")
        self._check_layer(view, layer)
        try:
            box, size = view.pyramid.box(level, col, row)
        except TileNotFound as err:
            raise HTTPProblem(404, str(err)) from None
        maps = self.maps(view)
        png = self.cache.get_or_make((slide_id, layer, level, col, row), lambda: maps.render(layer, box, size) or _blank_png())
        return png, "image/png"

    def _slide_jpeg(self, view: SlideView, level: int, col: int, row: int) -> bytes:
        return self._read(view, lambda tiles: tiles.tile_jpeg(level, col, row))

    def _read(self, view: SlideView, read):
        for _ in range(3):  # another thread may release the slide in between: open it again
            try:
                return read(self.tiles(view))
            except SlideClosed:
                continue
        raise HTTPProblem(503, f"{view.entry.slide_id}: too many slides in use at once; try again")

    def _check_layer(self, view: SlideView, layer: str) -> None:
        if view.pyramid is None:
            raise HTTPProblem(404, view.info_error or f"{view.entry.slide_id}: no results to draw (status {view.entry.status})")
        if not self.maps(view).has_layer(layer):
            raise HTTPProblem(404, f"no layer {layer!r} for slide {view.entry.slide_id!r}")


def host_name(host_header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host_header: str | None, served_host: str) -> bool:
    """Whether a request's Host names this server: a loopback name, the --host given, or an IP address.

    A name that is not ours is a page's own name resolved to this machine (DNS rebinding); an IP
    address cannot be rebound, so any is accepted (and is how other machines reach --host 0.0.0.0).
    A request without Host (HTTP/1.0) comes from no browser and is answered.
    """
    if host_header is None:
        return True
    name = host_name(host_header)
    allowed = {*LOCAL_HOSTS, served_host.lower()}
    if served_host in ALL_INTERFACES:
        allowed |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    if name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    server_version = "ldcsf-view"
    protocol_version = "HTTP/1.1"  # keep-alive: a page's many tile requests share a few connections
    timeout = SOCKET_TIMEOUT_S
    # Headers and body go out as two writes; on a kept-alive connection Nagle's algorithm would hold
    # the body until the client's delayed ACK (~40 ms per request).
    disable_nagle_algorithm = True
    viewer: Viewer  # set on the subclass made by `make_server`
    served_host = "127.0.0.1"  # set on the subclass made by `make_server`

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        try:
            if not host_allowed(self.headers.get("Host"), self.served_host):
                raise HTTPProblem(421, f"this viewer does not serve {self.headers.get('Host')!r}; open it by the "
                                       "address it printed")
            body, content_type, cache = self._route()
            status = 200
        except HTTPProblem as problem:
            status, cache = problem.status, False
            if self.path.startswith("/slide/"):  # a page, so the answer is a page a person reads
                body, content_type = _problem_page(problem), "text/html; charset=utf-8"
            else:
                body, content_type = _problem_body(self.path, problem), "application/json"
        except Exception as err:  # noqa: BLE001 - any failure is an answer, never a dropped connection
            log.warning("%s: %s", self.path, err)
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            status, body, content_type, cache = 500, _problem_body(self.path, HTTPProblem(500, message)), "application/json", False
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if send_body:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the browser moved on (panned away)
            pass

    def _route(self) -> tuple[bytes | str, str, bool]:
        url = urlsplit(self.path)
        raw = url.path.split("/")[1:]
        try:
            parts = [unquote(p, errors="strict") for p in raw]
        except UnicodeDecodeError:
            raise HTTPProblem(400, "the address is not valid UTF-8") from None
        viewer = self.viewer
        if parts in ([""], ["index.html"]):
            return _static("cohort.html"), "text/html; charset=utf-8", False
        head = parts[0]
        if parts == ["favicon.ico"]:
            return _static("favicon.svg"), "image/svg+xml", True
        if head == "static" and len(parts) >= 2:
            return _static("/".join(parts[1:])), _mime("/".join(parts[1:])), True
        if head == "slide" and len(parts) == 2:
            viewer.slide(parts[1])  # an unknown id is a 404 before any page is sent
            return _static("slide.html"), "text/html; charset=utf-8", False
        if head == "api":
            query = parse_qs(url.query)
            if parts[1:] == ["cohort"]:
                return _json(viewer.cohort()), "application/json", False
            if parts[1:] == ["study"]:
                return _json(viewer.study()), "application/json", False
            if len(parts) == 3 and parts[1] == "slide":
                return _json(viewer.slide_info(parts[2])), "application/json", False
            if len(parts) == 4 and parts[1] == "slide" and parts[3] == "tile":
                return _json(viewer.tile_numbers(parts[2], query)), "application/json", False
            if len(parts) == 4 and parts[1] == "slide" and parts[3] == "thumbnail.jpg":
                return viewer.thumbnail(parts[2]), "image/jpeg", True
        if head == "study" and len(parts) == 2:
            return viewer.study_file(parts[1]), _mime(parts[1]), False
        if head == "dz" and len(parts) == 3 and parts[2].endswith(".dzi"):
            return viewer.dzi(parts[1], parts[2][: -len(".dzi")]), "application/xml", True
        if head == "dz" and len(parts) == 5 and parts[2].endswith("_files"):
            level = _int(parts[3], "level")
            match = _TILE_NAME.match(parts[4])
            if not match:
                raise HTTPProblem(400, f"bad tile name {parts[4]!r} (expected <col>_<row>.jpeg or .png)")
            col, row, fmt = int(match[1]), int(match[2]), match[3]
            body, content_type = viewer.dz_tile(parts[1], parts[2][: -len("_files")], level, col, row, fmt)
            return body, content_type, True
        raise HTTPProblem(404, f"no such page: {url.path}")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the http.server signature
        log.debug("%s %s", self.address_string(), format % args)


class ViewerHTTPServer(ThreadingHTTPServer):
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


def make_server(output: OutputFolder, host: str = "127.0.0.1", port: int = 8000,
                cache_bytes: int = TILE_CACHE_BYTES) -> ThreadingHTTPServer:
    """A server for `output`, bound to host:port (port 0: any free port), not yet serving."""
    viewer = Viewer(output, cache_bytes)
    handler = type("BoundHandler", (Handler,), {"viewer": viewer, "served_host": host})
    try:
        server = ViewerHTTPServer((host, port), handler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is already in use; pass --port with another number (--port 0 picks a free one)") from None
        if err.errno in (errno.EACCES, errno.EPERM):
            raise PermissionError(f"not allowed to listen on {host}:{port}; ports below 1024 need privileges, pass --port 8000") from None
        raise ValueError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    server.daemon_threads = True
    server.viewer = viewer
    return server


def server_address(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    return f"http://{shown}:{port}/"


# -- helpers -------------------------------------------------------------------------------------
def _static(name: str) -> bytes:
    root = STATIC_DIR.resolve()
    try:
        path = (root / name).resolve()
    except (ValueError, OSError):  # a null byte, a name too long: no such file
        raise HTTPProblem(404, f"no such file: /static/{name!r}") from None
    if root not in path.parents or not path.is_file():
        raise HTTPProblem(404, f"no such file: /static/{name}")
    return path.read_bytes()


def _mime(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return kind + ("; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else "")


def _json(obj) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=False)


def _json_default(obj):
    if hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return str(obj)


def _problem_body(path: str, problem: HTTPProblem) -> str:
    return json.dumps({"error": str(problem), "status": problem.status})


def _problem_page(problem: HTTPProblem) -> str:
    return (
        "<!doctype html><meta charset='utf-8'><title>ldcsf view: not found</title>"
        "<link rel='stylesheet' href='/static/viewer.css'><body class='problem'>"
        f"<p class='error' id='page-error'>{html.escape(str(problem))}</p><p><a href='/'>all slides</a></p>"
    )


def _int(text: str, what: str) -> int:
    if not re.fullmatch(r"\d{1,7}", text):
        raise HTTPProblem(400, f"bad {what} {text!r} (expected a whole number)")
    return int(text)


def _number(query: dict, name: str) -> float:
    values = query.get(name)
    if not values:
        raise HTTPProblem(400, f"missing ?{name}= (a level-0 pixel coordinate)")
    try:
        value = float(values[0])
    except ValueError:
        raise HTTPProblem(400, f"bad {name}={values[0]!r} (expected a number)") from None
    if not math.isfinite(value):
        raise HTTPProblem(400, f"bad {name}={values[0]!r} (expected a finite number)")
    return value


def _hotspot(hotspot: dict | None) -> dict | None:
    if not hotspot:
        return None
    return {k: v for k, v in hotspot.items() if k != "tile_ids"}


def _blank_png() -> bytes:
    global _BLANK_PNG
    if _BLANK_PNG is None:
        buffer = io.BytesIO()
        Image.new("RGBA", (1, 1), (0, 0, 0, 0)).save(buffer, format="PNG")
        _BLANK_PNG = buffer.getvalue()
    return _BLANK_PNG
