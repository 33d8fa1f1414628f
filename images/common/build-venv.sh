#!/bin/sh
# Installs a hash-pinned lock into /opt/venv with Debian's Python 3.13, the interpreter of the final image.
#
# Runs in a Debian build stage. pip trusts the CA bundle handed in as the BuildKit secret `ca-bundle`
# (for TLS-intercepting proxies); a secret is mounted only for this step and lands in no layer.
set -eu

lock=$1
rm -f /etc/apt/apt.conf.d/docker-clean
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends python3.13 python3-pip >/dev/null
python3.13 -m venv --without-pip /opt/venv
if [ -s /run/secrets/ca-bundle ]; then
    export PIP_CERT=/run/secrets/ca-bundle
fi
# Wheels only: the build stage has no compiler, and a wheel is what the hashes in the lock pin.
python3.13 -m pip --python /opt/venv/bin/python install --quiet --disable-pip-version-check --no-deps \
    --require-hashes --only-binary=:all: -r "$lock"

# Third-party packages ship as bytecode only: a read-only image cannot cache bytecode at run time, and
# sources beside it would double their size. Tracebacks show no source line for their frames; the
# app's own code, copied in by the Dockerfile, keeps its sources. Package metadata (dist-info), which
# scanners read, stays. As for the standard library, the bytecode is at optimization level 2 (no
# docstrings, no asserts): both apps' test suites pass under `python -OO`.
site_packages=/opt/venv/lib/python3.13/site-packages
python3.13 -m compileall -q -b -o 2 "$site_packages"
find "$site_packages" -name '*.py' -delete
find "$site_packages" -depth -name __pycache__ -exec rm -rf {} +
