"""tools/system_packages.sh: what `make test` installs before the suite runs (checked by dry runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "system_packages.sh"
PACKAGES = ("chromium", "chromium-driver", "libturbojpeg0")


def dry_run(path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    return subprocess.run([shutil.which("bash"), str(SCRIPT), "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=60)


def bin_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only `tools` (so chromium, chromedriver and ldconfig are not found)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_a_dry_run_lists_every_missing_package_and_the_command(tmp_path):
    done = dry_run(bin_with(tmp_path, "id", "grep", "apt-get", "sudo"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "system packages missing: " + " ".join(PACKAGES)
    if shutil.which("apt-get") is None:
        assert lines[1].startswith("would not install: apt-get not found")
    elif os.geteuid() == 0:
        assert lines[1] == ("would run: apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                            + " ".join(PACKAGES))
    else:  # with or without password-less sudo, the line names what would happen
        assert lines[1].startswith(("would run: sudo -n apt-get", "would not install: not root"))


def test_a_dry_run_installs_nothing_and_says_what_is_present():
    done = dry_run(os.environ["PATH"] + ":/usr/sbin:/sbin")
    assert done.returncode == 0, done.stderr
    have_all = (shutil.which("chromium") or shutil.which("chromium-browser")) and shutil.which("chromedriver") \
        and Path("/usr/bin/chromedriver").exists() and "libturbojpeg.so" in subprocess.run(
            ["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    if have_all:
        assert done.stdout.strip() == "system packages: all present (chromium, chromium-driver, libturbojpeg0)"
    else:
        assert done.stdout.startswith("system packages missing: ")


def test_anything_but_dry_run_is_refused_with_the_usage():
    done = subprocess.run([shutil.which("bash"), str(SCRIPT), "--yes"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("usage: ")
