#!/bin/sh
# scripts/check-abi.sh [--update] - the ABI check of docs/abi.md.
#
# Builds libtl.so with debug information (its own build directory,
# ${ABI_BUILD_DIR:-build-abi}: release flags plus -g, library only), then:
#  1. the exported symbols equal the functions declared with TL_API in
#     include/tl/*.h (tests/check_symbols.py, the same check meson test runs);
#  2. abidiff against the committed baseline tests/abi/libtl.abi: additions
#     pass; an incompatible change (a function removed or its signature
#     changed, a public struct or enum changed in a way old callers notice)
#     fails - unless abi_major in meson.build was raised, so the soname
#     differs from the baseline's, which then has to be regenerated.
# --update regenerates the baseline from the current sources (after a
# release, or after raising abi_major). Needs abigail-tools (abidw, abidiff).
set -eu
cd "$(dirname "$0")/.."
update=0
[ "${1:-}" = --update ] && update=1
build=${ABI_BUILD_DIR:-build-abi}
baseline=tests/abi/libtl.abi

for tool in abidw abidiff nm readelf python3; do
    command -v "$tool" >/dev/null || { echo "check-abi: $tool is missing (apt-get install abigail-tools binutils python3)" >&2; exit 1; }
done

# Only the library, with -g: abidw reads the types from DWARF. The flags are
# otherwise the release ones, so this is the library users get.
if [ -f "$build/build.ninja" ]; then
    meson setup --reconfigure "$build" >/dev/null
else
    meson setup "$build" --buildtype=release -Ddebug=true -Dtests=disabled -Dexamples=false -Dbench=false \
        -Ddocs=disabled -Dfuzzing=false >/dev/null
fi
ninja -C "$build" >/dev/null
lib=$(find "$build/lib" -maxdepth 1 -type f -name 'libtl.so.*.*.*' | head -n 1)
[ -n "$lib" ] || { echo "check-abi: no libtl.so.X.Y.Z in $build/lib" >&2; exit 1; }

# Only its verdict when it passes; everything when it fails.
if ! symbols=$(python3 tests/check_symbols.py "$lib" include/tl nm 2>&1); then
    echo "$symbols" >&2
    echo "check-abi: the exported symbols differ from the TL_API declarations" >&2
    exit 1
fi

if [ "$update" = 1 ]; then
    # Locations, dependencies and the build directory are left out, so the
    # baseline only changes when the ABI does.
    mkdir -p "$(dirname "$baseline")"
    abidw --no-corpus-path --no-comp-dir-path --no-show-locs --no-elf-needed --out-file "$baseline" "$lib"
    chmod 644 "$baseline"
    echo "check-abi: wrote $baseline from $lib ($(grep -c '<elf-symbol name=' "$baseline") exported symbols)"
    exit 0
fi
[ -f "$baseline" ] || { echo "check-abi: no baseline $baseline; create it with $0 --update" >&2; exit 1; }

old_soname=$(sed -n "s/.*soname='\([^']*\)'.*/\1/p" "$baseline" | head -n 1)
new_soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')

# What the ABI policy (docs/abi.md) allows, read from the headers so new
# types are covered without editing this script:
#  - opaque handles (`typedef struct tl_x tl_x;`): their layout is libtl's
#    own business;
#  - structs that start with `unsigned int version` (options) or
#    `size_t struct_size` (tl_progress) may gain members at the end.
supp=$(mktemp)
trap 'rm -f "$supp"' EXIT INT TERM
handles=$(sed -n 's/^typedef struct \([a-z_0-9]*\) \1;.*/\1/p' include/tl/*.h | paste -sd'|' -)
growable=$(awk '/^typedef struct [a-z_0-9]+ \{/ { name = $3; getline;
                  if ($0 ~ /^ *(unsigned int version|size_t struct_size);/) print name }' include/tl/*.h |
           paste -sd'|' -)
{
    printf '[suppress_type]\n  label = opaque handles\n  name_regexp = ^(%s)$\n\n' "$handles"
    printf '[suppress_type]\n  label = versioned structs grow at the end\n  type_kind = struct\n'
    printf '  name_regexp = ^(%s)$\n  has_data_member_inserted_at = end\n' "$growable"
} >"$supp"

set +e
report=$(abidiff --suppressions "$supp" --no-show-locs "$baseline" "$lib")
rc=$?
set -e
# abidiff's status is a bit set: 1 error, 2 usage, 4 ABI change, 8
# incompatible change. It calls only removals incompatible; a changed
# signature or struct is "a change" - for a C library just as breaking. So
# any removed or changed function, variable or symbol fails; only
# additions (and what the suppressions above allow) pass.
if [ $((rc & 3)) -ne 0 ]; then
    echo "$report"
    echo "check-abi: abidiff failed (status $rc)" >&2
    exit 1
fi
breaking=$(echo "$report" | grep -E 'changes summary: ' |
           sed -E 's/\([^)]*\)//g' | grep -E '[1-9][0-9]* (Removed|Changed)' || true)
if [ $((rc & 8)) -ne 0 ] || [ -n "$breaking" ]; then
    echo "$report"
    if [ "$old_soname" != "$new_soname" ]; then
        echo "check-abi: incompatible changes with a new soname ($old_soname -> $new_soname): allowed;" \
             "regenerate the baseline with $0 --update" >&2
        exit 0
    fi
    echo "check-abi: INCOMPATIBLE ABI change against $baseline while the soname stays $new_soname." >&2
    echo "check-abi: keep the old interface, or raise abi_major in meson.build (docs/abi.md)." >&2
    exit 1
fi
if [ $((rc & 4)) -ne 0 ]; then
    echo "$report"
    echo "check-abi: compatible additions against $baseline ($new_soname): OK"
    exit 0
fi
echo "check-abi: $new_soname matches $baseline; exported symbols equal the TL_API declarations"
