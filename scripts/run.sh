#!/bin/sh
# scripts/run.sh - set up what is missing on a Debian machine, build, and run
# either the main job or the whole test suite. Run as root (it may apt-get).
#
#   scripts/run.sh demo   # the transfer workflow on real data
#   scripts/run.sh test   # every test: meson test, install + pkg-config, extras
#
# Environment: BUILD_DIR (default build), TL_SKIP_APT=1 to never call apt-get.
set -eu
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
demo | test) ;;
*)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
BUILD_DIR=${BUILD_DIR:-build}

# --- dependencies: Debian packages only, nothing downloaded at run time ----
pkgs="meson ninja-build pkg-config gcc g++ python3 libblis-dev zlib1g-dev check dataset-fashion-mnist"
# The hardening checks (scripts/hardening.sh): libFuzzer from clang, and
# abidw/abidiff; gcc brings the sanitizer runtimes, binutils nm and readelf.
# The torch suite (tests/test_torch.c) compares the zoo with PyTorch; the
# onnx_export suite (tests/test_onnx_save.c) checks the exported ONNX files
# with python3-onnx and runs them in ONNX Runtime under node (npm below); the
# mpi suite (tests/test_mpi.c) builds libtl-mpi, runs it under mpirun, and
# checks it for leaks with valgrind.
if [ "$mode" = test ]; then
    pkgs="$pkgs clang-14 libclang-rt-14-dev abigail-tools binutils python3-torch python3-torchvision"
    pkgs="$pkgs python3-onnx libopenmpi-dev openmpi-bin valgrind"
    # Node.js and npm from Debian only when the machine has no node of its
    # own: a NodeSource nodejs package bundles npm and conflicts with
    # Debian's npm package.
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"
fi
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ] && [ "${TL_SKIP_APT:-0}" != 1 ]; then
    echo "run.sh: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi

# --- build -----------------------------------------------------------------
if [ -f "$BUILD_DIR/build.ninja" ]; then
    meson setup --reconfigure "$BUILD_DIR" >/dev/null
else
    meson setup "$BUILD_DIR" --buildtype=release
fi
ninja -C "$BUILD_DIR"

if [ "$mode" = demo ]; then
    exec scripts/main-job.sh "$BUILD_DIR"
fi

# --- tests -----------------------------------------------------------------
# ONNX Runtime for node, into a scratch folder under the build directory
# (tests/meson.build points TL_ORT_NODE_PATH at $BUILD_DIR/peers/node_modules).
# --ignore-scripts skips the package's optional GPU download; its CPU library
# ships inside it. Not on the Debian mirror, so it needs the npm registry;
# when that is unreachable the onnx_ort test is skipped (exit 77), not failed.
ort_dir="$BUILD_DIR/peers"
if [ ! -d "$ort_dir/node_modules/onnxruntime-node" ] && command -v npm >/dev/null 2>&1; then
    mkdir -p "$ort_dir"
    (cd "$ort_dir" && npm install --ignore-scripts --no-audit --no-fund onnxruntime-node) ||
        echo "run.sh: could not install onnxruntime-node; the onnx_ort test will be skipped"
fi
# The suites run with one thread each unless a test is about threads; a busy
# second core makes spinning OpenMP workers collapse throughput.
export OMP_WAIT_POLICY=passive
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2
scripts/check-install.sh "$BUILD_DIR"
# The ABI check, the whole suite again under ASan + UBSan, and a short run
# of every fuzz harness (docs/hardening.md).
scripts/hardening.sh all
echo "run.sh: all tests passed"
