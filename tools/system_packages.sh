#!/usr/bin/env bash
# Install the Debian packages the test suite needs, when they are absent:
#   chromium, chromium-driver  the viewer's browser tests (headless Chromium through Selenium)
#   libturbojpeg0              wsidicomizer (it builds the DICOM test slide) loads the system's libturbojpeg
# Runs apt-get as root, or through sudo when sudo works without a password; otherwise it says what
# to run and exits 1 (`make test` goes on, and the tests that need a package skip, naming this script).
#
#   tools/system_packages.sh            install what is missing
#   tools/system_packages.sh --dry-run  print what is missing and the command that would install it
set -uo pipefail

dry_run=0
case "${1:-}" in
    --dry-run) dry_run=1 ;;
    "") ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/bin/chromedriver ] && command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# ldconfig's cache is what the dynamic loader (and so ctypes) searches
{ command -v ldconfig >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libturbojpeg\.so'; } || missing+=(libturbojpeg0)

if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages: all present (chromium, chromium-driver, libturbojpeg0)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n "
else
    sudo=none
fi
install="apt-get update -qq && apt-get install -y -qq --no-install-recommends ${missing[*]}"

if [ $dry_run -eq 1 ]; then
    echo "system packages missing: ${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "would not install: apt-get not found; install ${missing[*]} with this system's package manager"
    elif [ "$sudo" = none ]; then
        echo "would not install: not root and no password-less sudo; run: sudo $0"
    else
        echo "would run: ${sudo}${install}"
    fi
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system packages missing: ${missing[*]}; apt-get not found: install them with this system's package manager" >&2
    exit 1
fi
if [ "$sudo" = none ]; then
    echo "system packages missing: ${missing[*]}; not root and no password-less sudo: run sudo $0" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! ${sudo}apt-get update -qq || ! ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "system packages: apt-get could not install ${missing[*]}; run: sudo $0" >&2
    exit 1
fi
echo "system packages: installed ${missing[*]}"
