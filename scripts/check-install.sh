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
# libtl-mpi, when the build made it: a program that links it through tl-mpi.pc
# alone (which brings libtl and MPI), run as one MPI process.
if [ -n "$(find "$stage" -name tl-mpi.pc | head -n 1)" ]; then
    cat > "$stage/mpi_check.c" <<'EOF_C'
#include <stdio.h>
#include <tl/mpi.h>
int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    tl_mpi_options o;
    tl_status st = tl_mpi_options_init(&o, TL_MPI_OPTIONS_VERSION);
    double loss;
    /* A NULL model: every process hears of the failure, nobody hangs. */
    tl_status ev = tl_model_evaluate_mpi(&loss, NULL, NULL, NULL, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    if (st != TL_OK || ev != TL_EINVAL) {
        fprintf(stderr, "mpi_check: %s / %s\n", tl_status_str(st), tl_status_str(ev));
        return 1;
    }
    return 0;
}
EOF_C
    # The sysroot prefix fits the staged libtl, not the system's MPI (which
    # tl-mpi.pc requires): its flags are added again without the prefix.
    mpi_pc=$(pkg-config --print-requires tl-mpi | grep -v '^tl\b' | head -n 1)
    mpi_cflags="" mpi_libs=""
    if [ -n "$mpi_pc" ]; then
        mpi_cflags=$(PKG_CONFIG_SYSROOT_DIR='' pkg-config --cflags "$mpi_pc")
        mpi_libs=$(PKG_CONFIG_SYSROOT_DIR='' pkg-config --libs "$mpi_pc")
    fi
    # shellcheck disable=SC2086
    cc "$stage/mpi_check.c" $(pkg-config --cflags tl-mpi) $mpi_cflags $(pkg-config --libs tl-mpi) $mpi_libs \
        -o "$stage/mpi_check"
    if command -v mpirun >/dev/null 2>&1; then
        root=""
        [ "$(id -u)" = 0 ] && root="--allow-run-as-root"
        # shellcheck disable=SC2086
        LD_LIBRARY_PATH="$libdir" mpirun -np 1 $root --oversubscribe -x LD_LIBRARY_PATH "$stage/mpi_check"
    fi
    echo "check-install: built and ran a libtl-mpi program through pkg-config tl-mpi"
fi
