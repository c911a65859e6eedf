#!/usr/bin/env python3
"""Every public header compiles on its own, warning-free.

For each include/tl/*.h (globbed, so new headers are covered), compiles a
file that includes it twice (the include guard must hold) as C11 with
-Wall -Wextra -Wpedantic -Werror, and, when a C++ compiler is given, as
C++ with the same warnings (the extern "C" guards). Prints every failure
with the compiler's output and exits 1 if there was one.

usage: check_headers.py INCLUDE_DIR --cc "CC ARGS..." [--cxx "CXX ARGS..."]
                        [--flags HEADER "ARGS..."]... [--skip HEADER]...
--flags gives one header extra compiler arguments (tl/mpi.h needs MPI's
include directory, as -isystem so that mpi.h's own warnings are not
libtl's); --skip leaves a header out (tl/mpi.h when MPI is not found).
"""
import argparse
import glob
import os
import shlex
import subprocess
import sys

WARNINGS = ["-Wall", "-Wextra", "-Wpedantic", "-Werror"]


def compile_one(compiler, lang_args, include_dir, header, extra):
    source = f"#include <tl/{header}>\n#include <tl/{header}>\nint tl_header_check;\n"
    cmd = compiler + lang_args + WARNINGS + extra + ["-fsyntax-only", "-I", include_dir, "-"]
    proc = subprocess.run(cmd, input=source, capture_output=True, text=True)
    return proc.returncode, " ".join(cmd), proc.stdout + proc.stderr


def main():
    p = argparse.ArgumentParser()
    p.add_argument("include_dir")
    p.add_argument("--cc", required=True)
    p.add_argument("--cxx")
    p.add_argument("--flags", nargs=2, action="append", default=[], metavar=("HEADER", "ARGS"))
    p.add_argument("--skip", action="append", default=[])
    a = p.parse_args()
    flags = {h: shlex.split(f) for h, f in a.flags}
    headers = sorted(os.path.basename(h) for h in glob.glob(os.path.join(a.include_dir, "tl", "*.h")))
    for h in a.skip:
        if h in headers:
            headers.remove(h)
            print(f"skip {h}")
    if not headers:
        sys.exit(f"check_headers: no headers in {a.include_dir}/tl")
    langs = [("C11", shlex.split(a.cc), ["-x", "c", "-std=c11"])]
    if a.cxx:
        langs.append(("C++11", shlex.split(a.cxx), ["-x", "c++", "-std=c++11"]))
    failed = 0
    for header in headers:
        for name, compiler, lang_args in langs:
            rc, cmd, output = compile_one(compiler, lang_args, a.include_dir, header, flags.get(header, []))
            if rc != 0:
                failed += 1
                print(f"FAIL {header} as {name}: {cmd}\n{output}")
            else:
                print(f"ok   {header} as {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
