#!/bin/sh
# Installs a hash-pinned lock into BUILDROOT/opt/venv for the image's platform:
#   build-venv.sh BUILDROOT LOCK WHEELS MACHINE
#
# BUILDROOT is the locked Python 3.13 unpacked for the build machine (unpack-packages.sh); MACHINE the image's
# (x86_64, aarch64). WHEELS holds the lock's wheels for MACHINE and the pinned pip (images/common/
# build-requirements.lock), both fetched by `cargo xtask build`. pip runs from its own wheel and installs from WHEELS
# only, for the image's platform (`--platform`, into the venv's site-packages): no network, no compiler, no
# emulation, and no pip in the image. The venv is the same for any platform but for the wheels.
set -eu

root=$1
lock=$2
wheels=$3
machine=$4
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
# Every manylinux tag up to Debian 13's glibc: pip expands only the legacy names itself.
platforms=""
minor=41
while [ "$minor" -ge 17 ]; do
    platforms="$platforms --platform manylinux_2_${minor}_$machine"
    minor=$((minor - 1))
done
platforms="$platforms --platform manylinux2014_$machine"

site_packages=/opt/venv/lib/python3.13/site-packages
in_root /usr/bin/python3.13 -m venv --without-pip /opt/venv
# --no-compile: pip would record the bytecode in RECORD; it is compiled below, reproducibly. --target is what pip
# asks for when it installs for another platform; the console scripts it writes there go where a venv keeps them.
# shellcheck disable=SC2086 # one word per flag
in_root /opt/venv/bin/python "/$pip_wheel/pip" install --quiet --disable-pip-version-check --no-cache-dir \
    --no-index --find-links /build/wheels --require-hashes --no-deps --only-binary=:all: --no-compile \
    --implementation cp --python-version 3.13 --abi cp313 $platforms \
    --target "$site_packages" -r /build/requirements.lock
if [ -d "$root$site_packages/bin" ]; then
    mv "$root$site_packages"/bin/* "$root/opt/venv/bin/"
    rmdir "$root$site_packages/bin"
fi
rm -rf "$root/build"

# Third-party packages ship as bytecode only: a read-only image cannot cache bytecode at run time, and
# sources beside it would double their size. Tracebacks show no source line for their frames; the
# app's own code, copied in by the Dockerfile, keeps its sources. Package metadata (dist-info), which
# scanners read, stays. As for the standard library, the bytecode is at optimization level 2 (no
# docstrings, no asserts): both apps' test suites pass under `python -OO`. Unchecked hash-based pycs
# carry no source time (the image never changes), and PYTHONHASHSEED=0 orders sets the same way in
# every build: the same sources give the same bytes, and bytecode is the same on every platform.
in_root /usr/bin/python3.13 -m compileall -q -b -o 2 --invalidation-mode unchecked-hash "$site_packages" >/dev/null
find "$root$site_packages" -name '*.py' -delete
find "$root$site_packages" -depth -name __pycache__ -exec rm -rf {} +
