#!/usr/bin/env python3
"""The exported symbols of the built libtl.so must equal the documented API.

Compares the dynamic symbols libtl.so defines (`nm -D --defined-only`, minus
the linker's own such as _init and _fini and the version node LIBTL_1) with
the functions declared with TL_API in every include/tl/*.h (globbed, so new
headers are covered). Prints both differences and exits 1 when there is
one; 77 (meson's "skipped") when nm is missing.

With --macro TL_MPI_API it checks libtl-mpi.so against the declarations
made with that macro instead (tl/mpi.h), and also that the library is
named in that header only.

usage: check_symbols.py [--macro MACRO] LIB_SO INCLUDE_DIR [NM]
"""
import glob
import os
import re
import shutil
import subprocess
import sys

# Defined by the toolchain in every shared object, not by libtl's sources.
LINKER_SYMBOLS = {
    "_init", "_fini", "_edata", "_end", "__bss_start", "_DYNAMIC",
    "_GLOBAL_OFFSET_TABLE_", "__data_start", "data_start", "__dso_handle",
    "_IO_stdin_used", "__TMC_END__", "__init_array_start", "__init_array_end",
}


def exported(lib, nm):
    out = subprocess.run([nm, "-D", "--defined-only", lib], check=True, capture_output=True, text=True).stdout
    symbols = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        kind, name = fields[-2], fields[-1]
        if kind == "A":  # absolute: the version node (LIBTL_1)
            continue
        name = name.split("@")[0]
        if name in LINKER_SYMBOLS:
            continue
        symbols.add(name)
    return symbols


def strip_comments_and_directives(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"\\\n", " ", text)  # join continued lines
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def declared(include_dir, macro="TL_API"):
    """{name: header} of every declaration made with `macro`."""
    names = {}
    headers = sorted(glob.glob(os.path.join(include_dir, "*.h")))
    if not headers:
        sys.exit(f"check_symbols: no headers in {include_dir}")
    for path in headers:
        with open(path, encoding="utf-8") as f:
            text = strip_comments_and_directives(f.read())
        for m in re.finditer(r"\b" + macro + r"\b([^;]*);", text):
            decl = m.group(1)
            head = decl.split("(", 1)[0]  # a function: the name is before its first "("
            idents = re.findall(r"[A-Za-z_]\w*", head)
            if not idents:
                sys.exit(f"check_symbols: cannot read the declaration '{macro}{decl};' in {path}")
            names[idents[-1]] = os.path.basename(path)
    return names


def main():
    args = sys.argv[1:]
    macro = "TL_API"
    if len(args) >= 2 and args[0] == "--macro":
        macro = args[1]
        args = args[2:]
    if len(args) not in (2, 3):
        sys.exit(__doc__)
    lib, include_dir = args[0], args[1]
    nm = args[2] if len(args) == 3 else shutil.which("nm")
    if not nm:
        print("check_symbols: nm not found; skipped")
        return 77
    have = exported(lib, nm)
    want = declared(include_dir, macro)
    extra = sorted(have - set(want))
    missing = sorted(set(want) - have)
    if extra:
        print(f"exported by {os.path.basename(lib)} but not declared with {macro} in {include_dir}:")
        for name in extra:
            print(f"  {name}")
    if missing:
        print(f"declared with {macro} but not exported by {os.path.basename(lib)}:")
        for name in missing:
            print(f"  {name}  ({want[name]})")
    if extra or missing:
        return 1
    print(f"{len(have)} exported symbols, all declared with {macro} in {len(set(want.values()))} headers:")
    for name in sorted(have):
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
