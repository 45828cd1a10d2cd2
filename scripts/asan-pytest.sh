#!/usr/bin/env bash
# Run Python tests against an ASan + UBSan build of the _picklex extension.
#
#   scripts/asan-pytest.sh [PYTEST_ARGS...]
#
# Builds the extension with PICKLEX_SANITIZE=address,undefined into
# build/<PICKLEX_BUILD_PREFIX>-asan (default prefix: test) and runs pytest on it through
# PYTHONPATH=<build>/pkg, with gcc's libasan preloaded into the (uninstrumented) interpreter.
# Without arguments it runs the tests that feed the extension hostile or unusual input (the
# files named in PICKLEX_ASAN_TESTS, default below, that exist), or all of tests/python if
# none of them exists yet.
#
# ASAN_OPTIONS has detect_leaks=0: CPython keeps interned and cached objects alive at exit
# by design, which LeakSanitizer would report. PYTHONMALLOC=malloc routes Python's own
# allocations through malloc so ASan sees overruns of objects the extension builds.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${PICKLEX_BUILD_PREFIX:-test}"
build="$root/build/$prefix-asan" # shared with test.sh's asan-core step: one ASan build
# The interpreter that runs the tests; its site-packages must have pytest/hypothesis/numpy.
venv_python="$root/build/$prefix-venv/bin/python"
python="${PYTHON_ASAN:-$([[ -x "$venv_python" ]] && echo "$venv_python" || echo python3)}"
default_tests="test_malformed*.py test_hostile*.py test_security*.py test_conformance*.py \
test_identity*.py test_differential*.py test_roundtrip*.py test_oob*.py test_api*.py"

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPICKLEX_BUILD_PYTHON=ON -DPICKLEX_BUILD_TESTS=ON -DPICKLEX_SANITIZE=address,undefined \
    -DPython_EXECUTABLE="$(command -v "$python")" >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "${PICKLEX_JOBS:-2}" || exit 1

libasan="$(${CXX:-g++} -print-file-name=libasan.so)"
if [[ ! -e "$libasan" ]]; then
    echo "asan-pytest.sh: libasan.so not found (from ${CXX:-g++} -print-file-name)" >&2
    exit 1
fi

args=()
for arg in "$@"; do
    # Paths are taken relative to where the script was started, not the scratch directory.
    if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then
        suffix="${arg#"${arg%%::*}"}"
        arg="$(realpath "${arg%%::*}")$suffix"
    fi
    args+=("$arg")
done
if ((${#args[@]} == 0)); then
    for pattern in ${PICKLEX_ASAN_TESTS:-$default_tests}; do
        for file in "$root"/tests/python/$pattern; do
            [[ -e "$file" ]] && args+=("$file")
        done
    done
    ((${#args[@]})) || args=("$root/tests/python")
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$scratch" || exit 1
export LD_PRELOAD="$libasan" PYTHONMALLOC=malloc PYTHONPATH="$build/pkg"
# Tests with wall-clock limits can scale them: sanitized code runs several times slower.
export PICKLEX_UNDER_SANITIZER=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Make sure the sanitized build is the one under test, not an installed wheel.
"$python" -c "import picklex._picklex as m, sys; assert m.__file__.startswith(sys.argv[1]), m.__file__; print('testing', m.__file__)" "$build/pkg" || exit 1
"$python" -m pytest -c "$root/pyproject.toml" --rootdir "$root" -p no:cacheprovider -q --tb=short "${args[@]}"
rc=$?
if ((rc == 5)) && ! compgen -G "$root/tests/python/test_*.py" >/dev/null; then
    echo "asan-pytest.sh: tests/python has no test files yet"
    exit 0
fi
exit "$rc"
