#!/usr/bin/env bash
# `cargo package` of every publishable crate (chasync-core, chasync-source, chasync-cli,
# chasync-daemon), the way `cargo publish` would: the crate files are listed, the manifests normalised (path
# dependencies carry versions; the test-only ones are dropped), and each package is built
# from its own .crate contents against the others' packaged versions (verification). The
# crates that are not published (publish = false: the Python extension, the testkit, the
# benches) are left out. CHASYNC_PACKAGE_NO_VERIFY=1 skips the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
crates=(chasync-core chasync-source chasync-cli chasync-daemon)
args=()
for c in "${crates[@]}"; do args+=(-p "$c"); done
if [ -n "${CHASYNC_PACKAGE_NO_VERIFY:-}" ]; then args+=(--no-verify); fi
# Verification builds each crate against the others' fresh .crate files, through a temporary
# local registry whose unpacked sources cargo keeps under $CARGO_HOME/registry/src/-<hash>/ and
# does not unpack again for the same version: left from an earlier run, they are stale sources
# (the build then fails against an old chasync-core). Remove them first; only the unpacked
# copies of these crates from local (non-index) registries go.
version="$(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "chasync-core"))')"
for c in "${crates[@]}"; do
  for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/"$c-$version"; do
    if [ -d "$d" ]; then rm -rf "$d"; fi
  done
done
echo "check-package: cargo package ${crates[*]}" >&2
cargo package --locked --allow-dirty --quiet "${args[@]}"
for c in "${crates[@]}"; do
  crate="$(ls -t target/package/"$c"-*.crate | head -1)"
  files="$(tar -tzf "$crate")"
  for f in README.md LICENSE-MIT LICENSE-APACHE Cargo.toml; do
    if ! grep -qx "[^/]*/$f" <<<"$files"; then
      echo "check-package: $crate has no $f" >&2
      exit 1
    fi
  done
  echo "check-package: $(basename "$crate"): $(wc -l <<<"$files") files, $(du -k "$crate" | cut -f1) KiB" >&2
done
# Every other member of the workspace says it is not published (publish = false).
cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
published = set(sys.argv[1:])
for p in json.load(sys.stdin)["packages"]:
    if p["name"] not in published and p["publish"] != []:
        sys.exit("check-package: " + p["name"] + " is neither packaged here nor publish = false")
' "${crates[@]}"

# `cargo install --path` works for both binaries (a debug build here, to reuse the test build;
# the README's `cargo install --locked --path ...` is the same with the release profile).
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
for c in cli daemon; do
  cargo install --quiet --locked --debug --path "crates/$c" --root "$root"
done
"$root/bin/chasync" --version >&2
"$root/bin/chasyncd" --version >&2
echo "check-package: cargo install --path crates/cli and crates/daemon: chasync, chasyncd installed" >&2
