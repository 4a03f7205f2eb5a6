#!/usr/bin/env bash
# Release artifacts: one wheel per CPython 3.9-3.15 found on this machine (pyenv first, then
# python3.X on PATH), tagged manylinux2014 (glibc 2.17 and later: Ubuntu 20.04, Debian 11,
# RHEL 8 and newer all install them), plus the sdist. Each wheel is checked by installing it
# into a fresh venv of its own interpreter and running the demo under -W error; the sdist is
# checked by building a wheel from it with pip, as a user without a wheel for their Python would.
#
#   bash scripts/build-wheels.sh OUTDIR                       # every interpreter found
#   QUIESCE_PYTHONS="3.12" bash scripts/build-wheels.sh OUTDIR
#   QUIESCE_SDIST_CHECK=0 bash scripts/build-wheels.sh OUTDIR  # skip the sdist build (minutes)
#
# Wheels are built with maturin's --zig: zig links against glibc 2.17 symbols, which is what
# makes the manylinux2014 tag true without a manylinux container. OUTDIR keeps what other runs
# put there (CI runs this on the host and again in the newer-Python root into one OUTDIR).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ZIGLANG_VERSION=0.17.1
COMPATIBILITY=manylinux2014

out=${1:?usage: bash scripts/build-wheels.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

find_pythons "${QUIESCE_PYTHONS:-$SUPPORTED_PYTHONS}" "${QUIESCE_REQUIRED_PYTHONS:-}"
ensure_tools
"$tools/bin/pip" install -q --disable-pip-version-check "ziglang==$ZIGLANG_VERSION"
# maturin runs zig as `python3 -m ziglang` when no zig is on PATH: the tools venv's python.
export PATH="$root/$tools/bin:$PATH"

interpreter_args=()
for py in "${pythons[@]}"; do interpreter_args+=(-i "$py"); done
echo "== wheels ($COMPATIBILITY, zig $ZIGLANG_VERSION) for ${#pythons[@]} interpreter(s)"
"$tools/bin/maturin" build --release --locked --zig --compatibility "$COMPATIBILITY" \
    -o "$out" "${interpreter_args[@]}"
echo "== sdist"
"$tools/bin/maturin" sdist -o "$out"

check_dir=$(mktemp -d)
trap 'rm -rf "$check_dir"' EXIT
status=0
for py in "${pythons[@]}"; do
    tag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    wheel=$(ls "$out"/quiesce-*-"$tag"-"$tag"-*manylinux*2_17*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
        echo "FAILED: no manylinux2014 (2_17) wheel for $tag in $out" >&2
        status=1
        continue
    fi
    echo "== check $(basename "$wheel") on $("$py" --version)"
    "$py" -m venv "$check_dir/$tag"
    "$check_dir/$tag/bin/pip" install -q --disable-pip-version-check --no-index --no-deps "$wheel"
    if (cd "$check_dir" && "$check_dir/$tag/bin/python" -W error -m quiesce.demo >"$tag-demo.txt" 2>&1); then
        echo "demo ok ($(wc -l <"$check_dir/$tag-demo.txt") lines)"
    else
        echo "FAILED: the demo on $tag:" >&2
        tail -n 20 "$check_dir/$tag-demo.txt" >&2
        status=1
    fi
done

if [ "${QUIESCE_SDIST_CHECK:-1}" != "0" ]; then
    sdist=$(ls "$out"/quiesce-*.tar.gz | head -n 1)
    py=${pythons[0]}
    echo "== check $(basename "$sdist"): pip builds a wheel from it on $("$py" --version)"
    "$py" -m venv "$check_dir/sdist"
    if "$check_dir/sdist/bin/pip" wheel -q --disable-pip-version-check --no-deps \
        -w "$check_dir/sdist-wheel" "$sdist" \
        && "$check_dir/sdist/bin/pip" install -q --no-index --no-deps "$check_dir"/sdist-wheel/*.whl \
        && (cd "$check_dir" && "$check_dir/sdist/bin/python" -W error -m quiesce.demo >/dev/null); then
        echo "sdist ok"
    else
        echo "FAILED: building or running a wheel from $sdist" >&2
        status=1
    fi
fi
ls -l "$out"
exit "$status"
