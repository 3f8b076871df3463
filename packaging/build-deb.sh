#!/usr/bin/env bash
# Builds target/debian/oms-sync_<version>_amd64.deb and its oms-sync-dbgsym companion: the
# release binary, the man page and completions generated from it (`generate-assets`), then
# cargo-deb (`cargo install cargo-deb --locked`), which strips the binary and moves its debug
# info into the dbgsym package. Extra arguments go to `cargo deb`. Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || { echo "cargo-deb is missing; fix: cargo install cargo-deb --locked" >&2; exit 2; }
cargo build --release --locked --bin oms-sync
rm -rf target/assets
target/release/oms-sync generate-assets target/assets
# The workspace also holds the fake OMS (crates/fake-oms): package the root crate only.
cargo deb -p oms-sync --no-build "$@"
