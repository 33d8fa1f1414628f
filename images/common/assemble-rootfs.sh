#!/bin/sh
# Turns an unpacked root filesystem (unpack-packages.sh) into the distroless one:
#   assemble-rootfs.sh ROOT BUILDROOT MULTIARCH
#
# ROOT is the image's root for its platform (MULTIARCH: x86_64-linux-gnu, aarch64-linux-gnu); BUILDROOT is the same
# Python unpacked for the build machine, which compiles ROOT's standard library and checks its libraries: nothing
# of ROOT runs, so an arm64 root is assembled on an amd64 builder without emulation.
#
# Runs in a Debian build stage (never in the final image, which has no shell). Files nothing at run time needs
# (docs, man pages, translations, test suites, extra tools) are pruned; the package records stay. The standard
# library is compiled to bytecode, the non-root user added, and the build fails when a binary needs a library
# outside the closure.
#
# Two optional, space-separated lists (the [rootfs] table of the image's image.toml) leave out more:
# ROOTFS_PRUNE names paths (relative to /) that no process of this image runs or reads, and
# PYTHON_STDLIB_OMIT names top-level standard-library modules or packages, pure Python or extension,
# that the image's app and its packages never import.
set -eu

cd "$1"
ROOTFS=$(pwd)
BUILDROOT=$2
multiarch=$3

# Prune what no process of the image runs or reads.
find usr/share/doc -mindepth 2 ! -name copyright -delete 2>/dev/null || true
find usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf usr/share/man usr/share/info usr/share/lintian usr/share/locale usr/share/bug usr/share/gcc usr/share/gdb \
    usr/lib/$multiarch/gconv usr/lib/systemd usr/lib/tmpfiles.d usr/lib/sysusers.d etc/init.d etc/logrotate.d \
    usr/libexec usr/share/doc-base usr/share/lintian usr/share/debconf etc/default \
    usr/lib/python3.13/test usr/lib/python3.13/idlelib usr/lib/python3.13/tkinter usr/lib/python3.13/turtledemo \
    usr/lib/python3.13/ensurepip usr/lib/python3.13/lib2to3 usr/lib/python3.13/pydoc_data \
    usr/lib/python3.13/venv usr/lib/python3.13/config-3.13-$multiarch usr/lib/python3.13/_pyrepl \
    usr/lib/python3.13/unittest usr/lib/python3.13/__phello__
rm -f usr/lib/python3.13/lib-dynload/*_test*.so usr/lib/python3.13/lib-dynload/*xx*.so \
    usr/bin/pydoc3.13 usr/bin/pygettext3.13 usr/lib/python3.13/turtle.py \
    usr/lib/python3.13/pydoc.py usr/lib/python3.13/doctest.py usr/lib/python3.13/_pydecimal.py \
    usr/lib/$multiarch/libmvec.so.1
# glibc's debugging preloads and compatibility libraries, and variants of libexpat and libcap no program
# links (the closing check below fails the build should one ever be needed).
libs=usr/lib/$multiarch
rm -f $libs/libc_malloc_debug.so.* $libs/libmemusage.so $libs/libpcprofile.so $libs/libthread_db.so.* \
    $libs/libBrokenLocale.so.* $libs/libnsl.so.* $libs/libnss_compat.so.* $libs/libnss_hesiod.so.* \
    $libs/libexpatw.so.* $libs/libpsx.so.*
# OpenSSL engines load only when an openssl.cnf asks for them (none ships); the compiled time zones are
# what programs read, not the text source they were compiled from.
rm -rf $libs/engines-3 usr/share/zoneinfo/tzdata.zi
for path in ${ROOTFS_PRUNE:-}; do
    rm -rf "./$path"
done
for module in ${PYTHON_STDLIB_OMIT:-}; do
    rm -rf "usr/lib/python3.13/$module" "usr/lib/python3.13/$module.py" \
        usr/lib/python3.13/lib-dynload/"$module".cpython-*.so
done
find usr/lib/python3.13 -depth -name __pycache__ -exec rm -rf {} + 2>/dev/null || true

# Bytecode for the standard library, written once here: a read-only image cannot cache it at run time,
# and compiling it again in every process costs each start-up seconds. Sources are then dropped
# (Python imports the bytecode alone), which keeps the image as small as without bytecode; the cost is
# that tracebacks show no source line for standard-library frames. The app keeps its sources.
# Optimization level 2 (as `python -OO`) leaves docstrings and asserts out of the bytecode; CPython's
# own test suite runs at that level, so the standard library works without them.
# Unchecked hash-based pycs carry no source time (the image never changes), and PYTHONHASHSEED=0 orders
# sets the same way every build: the same sources give the same bytes. The build machine's Python (the same
# locked version) compiles ROOT moved under BUILDROOT, recording /usr/lib/python3.13 as the sources' place.
in_buildroot() {
    env -i LANG=C.UTF-8 PYTHONHASHSEED=0 "$(command -v chroot)" "$BUILDROOT" "$@"
}
cd /
mv "$ROOTFS" "$BUILDROOT/target"
if [ -d "$BUILDROOT/target/usr/lib/python3.13" ]; then
    in_buildroot /usr/bin/python3.13 -m compileall -q -b -o 2 --invalidation-mode unchecked-hash \
        -d /usr/lib/python3.13 /target/usr/lib/python3.13 >/dev/null
    find "$BUILDROOT/target/usr/lib/python3.13" -name '*.py' -delete
    # What the compiler's own imports cached in the usual place is a second copy.
    find "$BUILDROOT/target/usr/lib/python3.13" -depth -name __pycache__ -exec rm -rf {} +
fi
# Optional stdlib extension modules (curses, dbm, readline, ...) whose library is not in the package list are
# dropped: importing them fails cleanly, as it does on a Python built without them. Any other binary that needs
# a library outside the closure fails the build.
cp /usr/local/lib/image-build/check-libraries.py "$BUILDROOT/check-libraries.py"
in_buildroot /usr/bin/python3.13 /check-libraries.py /target "$multiarch"
rm "$BUILDROOT/check-libraries.py"
mv "$BUILDROOT/target" "$ROOTFS"
cd "$ROOTFS"

# The non-root user of distroless images, and a world-writable /tmp for read-only deployments that mount none.
mkdir -p etc home/nonroot tmp var/tmp
cat > etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > etc/group <<'GROUP'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
GROUP
echo "hosts: files dns" > etc/nsswitch.conf
chown 65532:65532 home/nonroot
chmod 1777 tmp var/tmp
# The CA bundle of the Debian ca-certificates package, as its postinst would generate it.
# OpenSSL looks for it under /usr/lib/ssl, where Debian's openssl package (not shipped) links it.
# The individual certificates are then a second copy of the bundle.
if [ -d usr/share/ca-certificates ]; then
    mkdir -p etc/ssl/certs usr/lib/ssl
    find usr/share/ca-certificates -name '*.crt' | sort | xargs cat > etc/ssl/certs/ca-certificates.crt
    ln -sf /etc/ssl/certs/ca-certificates.crt usr/lib/ssl/cert.pem
    ln -sfn /etc/ssl/certs usr/lib/ssl/certs
    rm -rf usr/share/ca-certificates
fi

# No setuid/setgid file may ship.
find . -xdev -perm /6000 -type f -exec chmod ug-s {} +
