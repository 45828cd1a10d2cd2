#!/usr/bin/env bash
# Install what building and testing picklex needs, skipping whatever is already there.
#
#   scripts/install-deps.sh [PYTHON]
#
# System (Debian, needs root or sudo): GoogleTest, and clang with its runtime libraries for
# the libFuzzer harnesses. Python (into PYTHON's environment, default python3): the test
# extra of pyproject.toml. Safe to run repeatedly; prints what it installs.
set -euo pipefail

python="${1:-python3}"

apt_packages=(libgtest-dev clang libclang-rt-14-dev)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null; then
        echo "install-deps: missing ${missing[*]} and no apt-get; install them by hand" >&2
        exit 1
    fi
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    echo "install-deps: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists yet; update once, then install.
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The test extra in pyproject.toml, by import name (pip name=import name).
py_modules=(pytest=pytest hypothesis=hypothesis numpy=numpy lz4=lz4 zstandard=zstandard xxhash=xxhash
            pandas=pandas ruff=ruff joblib=joblib)
wanted=()
for entry in "${py_modules[@]}"; do
    "$python" -c "import ${entry#*=}" 2>/dev/null || wanted+=("${entry%%=*}")
done
if ((${#wanted[@]})); then
    echo "install-deps: pip install ${wanted[*]}"
    "$python" -m pip install -q --disable-pip-version-check "${wanted[@]}"
fi
echo "install-deps: all present"
