#!/usr/bin/env bash
# Fuzz picklex.Unpickler from Python with atheris, with coverage from the C++ extension.
#
#   scripts/fuzz-atheris.sh [SECONDS]          (default 60)
#
# Builds the extension with clang and -fsanitize=fuzzer-no-link into
# build/<PICKLEX_BUILD_PREFIX>-atheris (prefix default: test), preloads atheris's
# asan_with_fuzzer.so (it provides the coverage callbacks and libFuzzer), and runs
# fuzz/fuzz_loads_atheris.py on the seed corpus of scripts/gen_fuzz_corpus.py. Needs clang and
# `pip install atheris`. Findings are written to build/<prefix>-atheris/artifacts/.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
prefix="${PICKLEX_BUILD_PREFIX:-test}"
build="$root/build/$prefix-atheris"
python="${PYTHON:-python3}"

"$python" -c "import atheris" 2>/dev/null || "$python" -m pip install -q atheris || exit 1
mkdir -p "$build/artifacts" "$build/corpus-run"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DPICKLEX_BUILD_PYTHON=ON -DPICKLEX_SANITIZE=fuzzer-no-link \
    -DPython_EXECUTABLE="$(command -v "$python")" >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "${PICKLEX_JOBS:-2}" || exit 1
"$python" "$root/scripts/gen_fuzz_corpus.py" "$build/seeds" || exit 1

runtime="$("$python" -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so"
cd "$build" || exit 1
LD_PRELOAD="$runtime" ASAN_OPTIONS=detect_leaks=0 PYTHONPATH="$build/pkg" \
    "$python" "$root/fuzz/fuzz_loads_atheris.py" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -timeout=10 -dict="$build/seeds/pickle.dict" -artifact_prefix="$build/artifacts/" \
    "$build/corpus-run" "$build/seeds/fuzz_reader"
