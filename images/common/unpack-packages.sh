#!/bin/sh
# Unpacks Debian packages into a root filesystem: unpack-packages.sh ROOT DEBS
#
# DEBS holds the image's locked packages (`cargo xtask build` stages them from images/<name>/packages.lock, every
# file checked against its SHA256). Runs in a Debian build stage, never in the final image, which has no shell.
# Each package is unpacked without running its maintainer scripts and recorded under var/lib/dpkg/status.d/, the
# layout scanners (Trivy, Syft) read for OS packages in distroless images.
set -eu

root=$1
debs=$2
mkdir -p "$root/var/lib/dpkg/status.d"
for deb in "$debs"/*.deb; do
    package=$(dpkg-deb --field "$deb" Package)
    dpkg-deb --extract "$deb" "$root"
    {
        dpkg-deb --field "$deb" Package Version Architecture Source Maintainer Installed-Size Depends Pre-Depends Multi-Arch Homepage Description
        echo "Status: install ok installed"
    } > "$root/var/lib/dpkg/status.d/$package"
    dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./md5sums > "$root/var/lib/dpkg/status.d/$package.md5sums" 2>/dev/null || true
done
# usr-merge: Debian 13 packages ship /usr/lib etc.; the top-level links must exist for the loader path.
for dir in bin lib lib64 sbin; do
    [ -e "$root/$dir" ] || ln -s "usr/$dir" "$root/$dir"
done
