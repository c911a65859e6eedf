#!/bin/sh
# scripts/check-install.sh BUILD_DIR - install libtl into a staging prefix
# and build an example out of tree with nothing but pkg-config, as a user
# would: once against the shared library, once statically.
set -eu
build=${1:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --quiet
pc=$(find "$stage" -name tl.pc | head -n 1)
[ -n "$pc" ] || { echo "check-install: tl.pc was not installed" >&2; exit 1; }
# The staging tree stands for the root file system: pkg-config puts it in
# front of every -I and -L path.
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$stage"
cc examples/quickstart.c $(pkg-config --cflags tl) $(pkg-config --libs tl) -o "$stage/quickstart"
libdir=$(pkg-config --variable=libdir tl) # already under the sysroot
LD_LIBRARY_PATH="$libdir" "$stage/quickstart" --epochs 1 --threads 1 >/dev/null
# Static: the archive by path, then everything tl.pc lists for static links.
cc examples/quickstart.c $(pkg-config --cflags tl) "$libdir/libtl.a" \
    $(pkg-config --libs --static tl | sed 's/-ltl\b//') -o "$stage/quickstart-static"
"$stage/quickstart-static" --epochs 1 --threads 1 >/dev/null
# The tl program is installed beside the library and runs from there.
tl_bin=$(find "$stage" -path '*/bin/tl' -type f | head -n 1)
[ -n "$tl_bin" ] || { echo "check-install: the tl program was not installed" >&2; exit 1; }
LD_LIBRARY_PATH="$libdir" "$tl_bin" --version >/dev/null
echo "check-install: built and ran examples/quickstart out of tree through pkg-config (shared and static); tl installed"
