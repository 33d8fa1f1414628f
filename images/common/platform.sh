#!/bin/sh
# The names one platform goes by: platform.sh machine|multiarch ARCH, where ARCH is Debian's (and BuildKit's
# TARGETARCH): amd64 or arm64.
set -eu
case "$1:$2" in
    machine:amd64) echo x86_64 ;;
    machine:arm64) echo aarch64 ;;
    multiarch:amd64) echo x86_64-linux-gnu ;;
    multiarch:arm64) echo aarch64-linux-gnu ;;
    *) echo "platform.sh: no $1 for the architecture '$2' (amd64 or arm64)" >&2; exit 1 ;;
esac
