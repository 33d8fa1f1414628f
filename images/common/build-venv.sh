#!/bin/sh
# Installs a hash-pinned lock into ROOT/opt/venv with ROOT's own Python: build-venv.sh ROOT LOCK WHEELS
#
# ROOT is the image's unpacked root filesystem (unpack-packages.sh), so the venv is made by exactly the locked
# Python 3.13 the image runs. WHEELS holds the lock's wheels and the pinned pip (images/common/build-requirements.lock),
# both fetched by `cargo xtask build`; pip runs from its own wheel and installs from WHEELS only: no network, no
# compiler, and no pip in the image.
set -eu

root=$1
lock=$2
wheels=$3
# The chroot sees the inputs under /build.
mkdir -p "$root/build/wheels" "$root/tmp"
cp "$lock" "$root/build/requirements.lock"
cp "$wheels"/*.whl "$root/build/wheels/"
pip_wheel=$(cd "$root" && ls build/wheels/pip-*.whl)
# The root has no shell and no env(1): the environment is set on this side of chroot.
chroot=$(command -v chroot)
in_root() {
    env -i HOME=/tmp PATH=/usr/bin LANG=C.UTF-8 PYTHONHASHSEED=0 "$chroot" "$root" "$@"
}
in_root /usr/bin/python3.13 -m venv --without-pip /opt/venv
# --no-compile: pip would record the bytecode in RECORD; it is compiled below, reproducibly.
in_root /opt/venv/bin/python "/$pip_wheel/pip" install --quiet --disable-pip-version-check --no-cache-dir \
    --no-index --find-links /build/wheels --require-hashes --no-deps --only-binary=:all: --no-compile \
    -r /build/requirements.lock
rm -rf "$root/build"

# Third-party packages ship as bytecode only: a read-only image cannot cache bytecode at run time, and
# sources beside it would double their size. Tracebacks show no source line for their frames; the
# app's own code, copied in by the Dockerfile, keeps its sources. Package metadata (dist-info), which
# scanners read, stays. As for the standard library, the bytecode is at optimization level 2 (no
# docstrings, no asserts): both apps' test suites pass under `python -OO`. Unchecked hash-based pycs
# carry no source time (the image never changes), and PYTHONHASHSEED=0 orders sets the same way every
# build: the same sources give the same bytes.
site_packages=/opt/venv/lib/python3.13/site-packages
in_root /usr/bin/python3.13 -m compileall -q -b -o 2 --invalidation-mode unchecked-hash "$site_packages" >/dev/null
find "$root$site_packages" -name '*.py' -delete
find "$root$site_packages" -depth -name __pycache__ -exec rm -rf {} +
