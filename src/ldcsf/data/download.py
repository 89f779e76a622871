"""Download public tile data sets (Zenodo), verify, extract and import them as manifests.

Downloads resume: bytes go to `<file>.part` and an interrupted run continues with an HTTP Range
request; the file gets its final name only after its size and MD5 check out. urllib (stdlib)
is used rather than requests so no extra dependency is needed for one streaming GET.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..utils.progress import tqdm  # bars in a terminal, lines in a log

from .importers import import_class_folders, list_images
from .manifest import relative_paths, write_manifest
from .sources import check_count
from .splits import assign_splits

log = logging.getLogger(__name__)

#: Overrides every data set's base URL (a mirror, or a local server in tests).
BASE_URL_ENV = "LDCSF_DOWNLOAD_BASE_URL"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteDataset:
    """A zip of class folders on a web server, with what is needed to check and import it."""

    name: str
    filename: str
    base_url: str
    md5: str | None
    size: int | None  # bytes; None where no published figure could be confirmed
    mapping: str  # shipped mapping table
    group_pattern: str | None  # regex on file names giving the slide/patient id
    licence: str
    citation: str
    expected_images: int | None = None  # images in the archive; the import is checked against it
    organ: str | None = None

    def url(self, base_url: str | None = None) -> str:
        base = base_url or os.environ.get(BASE_URL_ENV) or self.base_url
        return f"{base.rstrip('/')}/{self.filename}"


DATASETS = {
    "kather2016": RemoteDataset(
        name="kather2016",
        filename="Kather_texture_2016_image_tiles_5000.zip",
        base_url="https://zenodo.org/records/53169/files",
        md5="0ddbebfc56344752028fda72602aaade",
        size=None,  # about 246 MB; the exact byte count was not confirmed, the MD5 is checked
        mapping="kather2016",
        # tile names carry the source slide (CRC-Prim-HE-NN); a name without it becomes its own group
        group_pattern=r"(?P<group>CRC-Prim-HE-\d+)",
        licence="CC-BY-4.0",
        citation="Kather et al. 2016, Sci Rep 6:27988, doi:10.5281/zenodo.53169",
        expected_images=5000,
        organ="colorectal",
    ),
    "nct-crc-he-100k": RemoteDataset(
        name="nct-crc-he-100k",
        filename="NCT-CRC-HE-100K.zip",
        base_url="https://zenodo.org/records/1214456/files",
        md5="6fd702d11df6292bc054397ae038a464",
        size=11_690_284_003,
        mapping="nct_crc_he_100k",
        group_pattern=None,  # names are random ids: no patient or slide recoverable
        licence="CC-BY-4.0",
        citation="Kather et al. 2019, PLoS Med 16:e1002730, doi:10.5281/zenodo.1214456",
        expected_images=100_000,
        organ="colorectal",
    ),
}


def download_file(url: str, dest: str | Path, md5: str | None = None, size: int | None = None,
                  progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest`, resuming a `dest.part` left by an earlier run; verify size and MD5."""
    dest = Path(dest)
    if dest.is_file():
        _verify(dest, dest, md5, size)
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to fetch: the .part is complete
            response = None
        else:
            raise ValueError(f"{url}: download failed (HTTP {err.code} {err.reason})") from None
    except urllib.error.URLError as err:
        raise ValueError(f"{url}: download failed ({err.reason})") from None
    if response is not None:
        with response:
            resumed = response.status == 206
            if start and not resumed:
                log.info("%s: server ignored the range request, downloading from the start", url)
            offset = start if resumed else 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else size
            with open(part, "ab" if resumed else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                try:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
                except (http.client.HTTPException, OSError) as err:
                    raise ValueError(f"{url}: download interrupted at {out.tell()} bytes ({err}); "
                                     "run again to resume") from None
    _verify(part, dest, md5, size)
    os.replace(part, dest)
    return dest


def extract_zip(archive: str | Path, out_dir: str | Path, progress: bool = True) -> Path:
    """Extract into `out_dir/<archive stem>/` (skipped when already there); return that folder.

    Extraction goes to a hidden staging folder renamed at the end, so an interrupted run never
    leaves a half-extracted folder under the final name.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    final = out_dir / archive.stem
    if final.is_dir():
        return final
    staging = out_dir / f".{archive.stem}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            # ZipFile.extract drops absolute paths and ".." from member names.
            for member in tqdm(zf.infolist(), desc=f"extracting {archive.name}", unit="file", disable=not progress):
                zf.extract(member, staging)
    except zipfile.BadZipFile as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ValueError(f"{archive}: not a valid zip file ({err})") from None
    os.replace(staging, final)
    return final


def find_class_root(folder: Path) -> Path:
    """The folder whose sub-folders are the classes: descend through single-folder wrappers."""
    while True:
        subdirs = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "__MACOSX"))]
        if len(subdirs) == 1 and not list_images(folder, recursive=False):
            folder = subdirs[0]
        else:
            return folder


def download_dataset(name: str, out_dir: str | Path, base_url: str | None = None, seed: int = 0,
                     progress: bool = True) -> Path:
    """Download, verify, extract and import a known data set; return its manifest path."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r} (known: {', '.join(DATASETS)})")
    spec = DATASETS[name]
    out_dir = Path(out_dir)
    archive = download_file(spec.url(base_url), out_dir / spec.filename, md5=spec.md5, size=spec.size, progress=progress)
    root = find_class_root(extract_zip(archive, out_dir, progress=progress))
    frame = import_class_folders(root, spec.mapping, group_pattern=spec.group_pattern, dataset=spec.name)
    check_count(spec.name, root, len(frame), spec.expected_images)
    frame = assign_splits(frame, group_col="group", seed=seed)
    manifest = write_manifest(relative_paths(frame, out_dir), out_dir / "manifest.csv")
    log.info("%s: %d images from %s (%s; cite %s)", manifest, len(frame), spec.filename, spec.licence, spec.citation)
    return manifest


def md5_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _verify(path: Path, dest: Path, md5: str | None, size: int | None) -> None:
    """Check size and MD5; a bad file is removed so the next run downloads afresh."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        if actual > size:
            path.unlink()
        raise ValueError(f"{dest}: size {actual} bytes, expected {size}" + (" (removed)" if actual > size else
                                                                               " (incomplete: run again to resume)"))
    if md5 is not None:
        got = md5_of(path)
        if got != md5.lower():
            path.unlink()
            raise ValueError(f"{dest}: MD5 {got} does not match the published {md5} (removed: run again to download afresh)")
