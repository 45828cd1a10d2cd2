#!/usr/bin/env bash
# Build and test everything in picklex; CI runs exactly this (see .ci/run).
#
#   bash scripts/test.sh [--quick] [--skip STEP]... [--only STEP]... [--help]
#
# Steps, in order:
#   deps          install missing system and Python dependencies (scripts/install-deps.sh)
#   lint          ruff over the Python code (package, tests, benchmarks, scripts)
#   goldens       the C++ tests' golden files still match this interpreter's pickle
#   wheel         `pip install .` (scikit-build-core) into a virtual environment
#   core          C++ core tests (GoogleTest) in a Release build, via ctest
#   pytest        tests/python against the installed wheel, from outside the source tree
#   asan-core     the C++ core tests again under ASan + UBSan (gcc)
#   fuzz          every libFuzzer harness for FUZZ_SECONDS on a generated corpus (clang)
#   asan-pytest   Python tests against an ASan + UBSan build of the extension
# --quick runs deps, lint, goldens, wheel, core and pytest only.
#
# A failing step does not stop the others; the summary lists each step's result and time,
# and the exit status is non-zero if any step failed.
#
# Environment:
#   PICKLEX_BUILD_PREFIX  build directories are build/<prefix>-* (default: test)
#   PICKLEX_JOBS          parallel compile jobs (default: 2)
#   FUZZ_SECONDS          seconds per fuzz harness (default: 45)
#   PYTHON                interpreter to build the virtual environment from (default: python3)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${PICKLEX_BUILD_PREFIX:-test}"
jobs="${PICKLEX_JOBS:-2}"
base_python="${PYTHON:-python3}"
venv="$root/build/$prefix-venv"
vpython="$venv/bin/python"
export PICKLEX_BUILD_PREFIX="$prefix" PICKLEX_JOBS="$jobs"

all_steps=(deps lint goldens wheel core pytest asan-core fuzz asan-pytest)
quick_steps=(deps lint goldens wheel core pytest)
selected=("${all_steps[@]}")
only=()
skip=()

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
        --quick) selected=("${quick_steps[@]}") ;;
        --only) only+=("$2"); shift ;;
        --skip) skip+=("$2"); shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "test.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
((${#only[@]})) && selected=("${only[@]}")
for s in "${selected[@]}" "${skip[@]}"; do
    [[ " ${all_steps[*]} " == *" $s "* ]] || { echo "test.sh: unknown step $s" >&2; exit 2; }
done

# ---- the steps ----

ensure_venv() {
    [[ -x "$vpython" ]] && return 0
    # System site-packages stay visible so numpy & co. need not be installed twice.
    "$base_python" -m venv --system-site-packages "$venv"
}

step_deps() {
    # System packages once, Python packages into the test environment only.
    ensure_venv || return 1
    bash "$root/scripts/install-deps.sh" "$vpython"
}

step_lint() {
    ensure_venv || return 1
    (cd "$root" && "$vpython" -m ruff check python tests bench scripts examples fuzz)
}

step_goldens() {
    "$base_python" "$root/scripts/gen_core_goldens.py" --check
}

step_wheel() {
    ensure_venv || return 1
    # Build the real wheel the way users get it; its build tree lives in build/<prefix>-wheel.
    (cd "$root" && "$vpython" -m pip install --disable-pip-version-check --force-reinstall \
        --no-deps . --config-settings=build-dir="build/$prefix-wheel") || return 1
    (cd /tmp && "$vpython" -c "import picklex, sys; print('installed', picklex.__file__)")
}

cmake_build() {
    local dir="$1"
    shift
    cmake -S "$root" -B "$dir" -G Ninja "$@" >"$dir.configure.log" 2>&1 \
        || { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j "$jobs"
}

step_core() {
    local dir="$root/build/$prefix-core"
    mkdir -p "$dir"
    cmake_build "$dir" -DCMAKE_BUILD_TYPE=Release -DPICKLEX_BUILD_TESTS=ON \
        -DPICKLEX_BUILD_PYTHON=OFF || return 1
    ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

step_pytest() {
    local tests="$root/tests/python"
    # Run from an empty directory so only the installed package can be imported.
    local scratch
    scratch="$(mktemp -d)"
    (cd "$scratch" && "$vpython" -m pytest "$tests" -c "$root/pyproject.toml" \
        --rootdir "$root" -p no:cacheprovider -q --tb=short)
    local rc=$?
    rm -rf "$scratch"
    if ((rc == 5)); then
        # pytest's "no tests collected": acceptable only while there are no test files.
        if compgen -G "$tests/test_*.py" >/dev/null || compgen -G "$tests/**/test_*.py" >/dev/null; then
            echo "pytest collected no tests although $tests has test files" >&2
            return 1
        fi
        echo "pytest: tests/python has no test files yet"
        return 0
    fi
    return "$rc"
}

step_asan_core() {
    # The same build directory and options as scripts/asan-pytest.sh, so the sanitized core
    # and extension are compiled once for both steps.
    local dir="$root/build/$prefix-asan"
    mkdir -p "$dir"
    cmake_build "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPICKLEX_BUILD_TESTS=ON \
        -DPICKLEX_BUILD_PYTHON=ON -DPICKLEX_SANITIZE=address,undefined \
        -DPython_EXECUTABLE="$vpython" || return 1
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
        ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

step_fuzz() {
    bash "$root/scripts/fuzz.sh" "${FUZZ_SECONDS:-45}"
}

step_asan_pytest() {
    PYTHON_ASAN="$vpython" bash "$root/scripts/asan-pytest.sh"
}

# ---- driver ----

names=()
results=()
times=()
failed=0
for s in "${selected[@]}"; do
    [[ " ${skip[*]} " == *" $s "* ]] && continue
    echo
    echo "==== $s ===="
    start=$SECONDS
    "step_${s//-/_}"
    rc=$?
    names+=("$s")
    times+=($((SECONDS - start)))
    if ((rc == 0)); then
        results+=(ok)
    else
        results+=("FAILED ($rc)")
        failed=1
    fi
done

echo
echo "==== summary ===="
for i in "${!names[@]}"; do
    printf '  %-12s %-12s %5ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
if ((failed)); then
    echo "test.sh: FAILED"
    exit 1
fi
echo "test.sh: all steps passed"
