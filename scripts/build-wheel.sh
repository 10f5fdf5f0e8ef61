#!/usr/bin/env bash
# The Python package as a wheel people can install, into dist/ (or $DIST_DIR):
#
#   chasync-<version>-cp310-abi3-manylinux_2_28_x86_64.whl
#
# abi3: one wheel for CPython 3.10 and every later version. manylinux_2_28: zig links the
# extension against glibc 2.28's symbols (maturin's --zig), so the wheel installs on any Linux
# with glibc >= 2.28 (Debian 10+, Ubuntu 18.10+, RHEL 8+), whatever glibc built it. Stripped.
# maturin, zig and auditwheel come from PyPI into a cached venv; the Rust toolchain is the
# machine's. The last line printed is the wheel's path. auditwheel then checks the result
# independently of maturin (its policy names the oldest manylinux the wheel satisfies).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${CHASYNC_CACHE:-$HOME/.cache/chasync}"
tools="$cache/wheel-tools"
out="${DIST_DIR:-$repo/dist}"
py="${PYTHON:-python3}"
policy="manylinux_2_28"

pins=("maturin==1.16.0" "ziglang==0.17.1" "auditwheel==6.8.2")
stamp="$tools/.chasync-pins"
if [ ! -x "$tools/bin/maturin" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${pins[*]}" ]; then
  echo "build-wheel: installing ${pins[*]} into $tools" >&2
  rm -rf "$tools"
  mkdir -p "$cache"
  "$py" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" > "$stamp"
fi

mkdir -p "$out"
rm -f "$out"/chasync-*.whl
echo "build-wheel: building the wheel (release, $policy, abi3, stripped)" >&2
# maturin finds zig through the ziglang package of the venv it runs from.
(cd "$repo/python" && PATH="$tools/bin:$PATH" "$tools/bin/maturin" build --release --strip \
  --zig --compatibility "$policy" --out "$out" >&2)

shopt -s nullglob
wheels=("$out"/chasync-*-cp310-abi3-"$policy"_x86_64.whl)
if [ "${#wheels[@]}" != 1 ]; then
  echo "build-wheel: expected one chasync-*-cp310-abi3-${policy}_x86_64.whl in $out, found: $(ls "$out")" >&2
  exit 1
fi
wheel="${wheels[0]}"

# auditwheel's verdict: the most widely compatible manylinux tag the wheel's symbols allow.
show="$("$tools/bin/auditwheel" show "$wheel" 2>&1)"
verdict="$(tr '\n' ' ' <<<"$show" | grep -o '"manylinux_2_[0-9]*_x86_64"' | head -1 | tr -d '"')"
minor="${verdict#manylinux_2_}"
minor="${minor%_x86_64}"
if [ -z "$verdict" ] || [ "$minor" -gt 28 ]; then
  echo "build-wheel: auditwheel does not find the wheel $policy-compatible:" >&2
  echo "$show" >&2
  exit 1
fi
echo "build-wheel: $(basename "$wheel"), $(du -k "$wheel" | cut -f1) KiB; auditwheel: $verdict" >&2
echo "$wheel"
