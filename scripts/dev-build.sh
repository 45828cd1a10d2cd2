#!/usr/bin/env bash
# Configure and build picklex into build/<name> for development.
#
#   scripts/dev-build.sh NAME [extra cmake -D options...]
#
# NAME picks a preset by its prefix or suffix:
#   *asan*   ASan+UBSan (PICKLEX_SANITIZE=address,undefined), RelWithDebInfo
#   *fuzz*   clang + libFuzzer harnesses, core only (needs clang)
#   *debug*  Debug build
#   other    Release
# Every build has the C++ tests on; the extension is built unless the preset is fuzz.
# Afterwards: `ctest --test-dir build/NAME` and `PYTHONPATH=build/NAME/pkg python3 -c "import picklex"`.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
    sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
    exit 2
fi
name="$1"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build/$name"

args=(-G Ninja -DPICKLEX_BUILD_TESTS=ON)
case "$name" in
    *fuzz*) args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPICKLEX_BUILD_FUZZERS=ON -DPICKLEX_BUILD_TESTS=OFF
                   -DPICKLEX_BUILD_PYTHON=OFF -DCMAKE_CXX_COMPILER="${CXX_FUZZ:-clang++}") ;;
    *asan*) args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPICKLEX_SANITIZE=address,undefined) ;;
    *debug*) args+=(-DCMAKE_BUILD_TYPE=Debug) ;;
    *) args+=(-DCMAKE_BUILD_TYPE=Release) ;;
esac

cmake -S "$root" -B "$build" "${args[@]}" "$@"
cmake --build "$build" -j "${PICKLEX_JOBS:-2}"
echo "built $build"
