#!/usr/bin/env bash
# Build the libFuzzer harnesses (fuzz/fuzz_*.cpp) with clang + ASan + UBSan and run each
# for a bounded time on a freshly generated seed corpus.
#
#   scripts/fuzz.sh [SECONDS_PER_HARNESS] [HARNESS...]
#
# SECONDS defaults to 45; HARNESS defaults to every fuzz_* target. The build goes to
# build/<PICKLEX_BUILD_PREFIX>-fuzz (default prefix: test), the growing corpus to
# build/<prefix>-fuzz/corpus-run/<harness>/ (kept between runs), crash inputs to
# build/<prefix>-fuzz/artifacts/. A crash, leak, timeout or sanitizer report fails the run;
# copy the input into fuzz/regressions/<harness>/ once the bug is fixed so ctest replays it.
# Without clang the step is skipped (exit 0) with a notice, unless FUZZ_REQUIRE_CLANG=1.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-45}"
shift || true
prefix="${PICKLEX_BUILD_PREFIX:-test}"
build="$root/build/$prefix-fuzz"
python="${PYTHON:-python3}"

if ! command -v clang++ >/dev/null; then
    echo "fuzz.sh: clang++ not found; skipping the fuzz run (scripts/install-deps.sh installs it)"
    [[ "${FUZZ_REQUIRE_CLANG:-0}" == 1 ]] && exit 1
    exit 0
fi

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DPICKLEX_BUILD_FUZZERS=ON -DPICKLEX_BUILD_TESTS=OFF \
    -DPICKLEX_BUILD_PYTHON=OFF >"$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "${PICKLEX_JOBS:-2}" || exit 1

seeds="$build/seeds"
rm -rf "$seeds"
"$python" "$root/scripts/gen_fuzz_corpus.py" "$seeds" || exit 1

if (($#)); then
    harnesses=("$@")
else
    harnesses=()
    for src in "$root"/fuzz/fuzz_*.cpp; do harnesses+=("$(basename "$src" .cpp)"); done
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$build/artifacts"
failed=()
for name in "${harnesses[@]}"; do
    corpus="$build/corpus-run/$name"
    mkdir -p "$corpus" "$seeds/$name"
    inputs=("$corpus" "$seeds/$name")
    [[ -d "$root/fuzz/regressions/$name" ]] && inputs+=("$root/fuzz/regressions/$name")
    echo "---- $name: ${seconds}s ----"
    "$build/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -dict="$seeds/pickle.dict" -artifact_prefix="$build/artifacts/$name-" \
        -print_final_stats=1 "${inputs[@]}" >"$build/$name.log" 2>&1
    rc=$?
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done )" "$build/$name.log" || true
    if ((rc != 0)); then
        echo "fuzz.sh: $name FAILED (exit $rc); last lines of $build/$name.log:"
        tail -n 60 "$build/$name.log"
        failed+=("$name")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz.sh: failures in ${failed[*]}; inputs in $build/artifacts/"
    exit 1
fi
echo "fuzz.sh: ${#harnesses[@]} harnesses ran ${seconds}s each without findings"
