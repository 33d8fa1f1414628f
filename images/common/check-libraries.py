"""Which shared libraries the ELF files of a root filesystem need and it lacks.

    python3 check-libraries.py ROOT MULTIARCH

Reads every ELF file under ROOT (executables, libraries, extension modules) the way the dynamic loader looks for
their DT_NEEDED libraries: in their RUNPATH/RPATH ($ORIGIN included), then /lib/MULTIARCH, /usr/lib/MULTIARCH,
/lib and /usr/lib, all inside ROOT. Nothing is run, so this works for any architecture (an arm64 root on an amd64
builder). Optional extension modules of the standard library (lib-dynload) whose library is missing are removed,
as on a Python built without them; any other file with a missing library is printed, and the exit code is 1.
"""

import os
import struct
import sys

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 1, 5, 15, 29
DYNLOAD = "/usr/lib/python3.13/lib-dynload/"


def dynamic_section(data):
    """The (needed, search paths) of a 64-bit little-endian ELF file, or None when it links nothing."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for index in range(phnum):
        kind, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + index * phentsize)
        if kind == PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif kind == PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        return None
    entries, position = [], dynamic[0]
    while position + 16 <= dynamic[0] + dynamic[1]:
        tag, value = struct.unpack_from("<qQ", data, position)
        if tag == 0:
            break
        entries.append((tag, value))
        position += 16
    strtab = next((value for tag, value in entries if tag == DT_STRTAB), None)
    base = next((offset + strtab - vaddr for vaddr, offset, size in loads if vaddr <= strtab < vaddr + size), None)

    def string(index):
        end = data.index(b"\0", base + index)
        return data[base + index:end].decode()

    needed = [string(value) for tag, value in entries if tag == DT_NEEDED]
    paths = [path for tag, value in entries if tag in (DT_RUNPATH, DT_RPATH) for path in string(value).split(":")]
    return needed, paths


def exists(root, path):
    """Whether `path` (absolute, inside the image) exists, following symbolic links inside `root`."""
    for _ in range(40):
        real = root + path
        if not os.path.islink(real):
            return os.path.exists(real)
        target = os.readlink(real)
        path = os.path.normpath(target if target.startswith("/") else os.path.join(os.path.dirname(path), target))
    return False


def missing(root, path, data, multiarch):
    found = dynamic_section(data)
    if found is None:
        return []
    needed, paths = found
    origin = os.path.dirname(path)
    search = [entry.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for entry in paths]
    search += ["/lib/" + multiarch, "/usr/lib/" + multiarch, "/lib", "/usr/lib"]
    return [name for name in needed if not any(exists(root, os.path.join(directory, name)) for directory in search)]


def main(root, multiarch):
    root = root.rstrip("/")
    problems = []
    for directory, _, files in os.walk(root + "/usr"):
        for name in sorted(files):
            real = os.path.join(directory, name)
            if os.path.islink(real) or not os.path.isfile(real):
                continue
            with open(real, "rb") as file:
                data = file.read()
            path = real[len(root):]
            lacking = missing(root, path, data, multiarch)
            if not lacking:
                continue
            if path.startswith(DYNLOAD):
                print(f"check-libraries: dropping {path} (its library is not in the package list)")
                os.remove(real)
            else:
                problems.append(f"{path}: {', '.join(lacking)}")
    if problems:
        print("check-libraries: shared libraries missing from the package list:", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
