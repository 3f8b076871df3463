#!/usr/bin/env bash
# Builds target/debian/oms-sync_<version>_amd64.deb and its oms-sync-dbgsym companion: the
# release binary, the man page and completions generated from it (`generate-assets`), then
# cargo-deb (`cargo install cargo-deb --locked`), which strips the binary and moves its debug
# info into the dbgsym package. Extra arguments go to `cargo deb`. Prints the .deb's path.
# OMS_SYNC_PROFILE=dev packages the debug build instead (what `cargo test` has already built;
# .ci/systemd-check uses it in CI to skip a release build): for checking, never for shipping.
set -euo pipefail
cd "$(dirname "$0")/.."
# The cargo-deb these scripts are checked with (.ci/systemd-check installs it).
CARGO_DEB_VERSION=3.8.0
command -v cargo-deb >/dev/null || { echo "cargo-deb is missing; fix: cargo install cargo-deb --locked --version $CARGO_DEB_VERSION" >&2; exit 2; }
PROFILE=${OMS_SYNC_PROFILE:-release}
case $PROFILE in
  release) DIR=release ;;
  dev) DIR=debug ;;
  *) echo "OMS_SYNC_PROFILE must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac
if [ "$PROFILE" = dev ]; then
  # The binaries `cargo test --all-targets` builds and leaves in target/debug: the same
  # command is a no-op after the tests, where `cargo build` would link them again (the test
  # profile's artifacts are not the dev profile's).
  cargo test --locked --all-targets --no-run --quiet
else
  cargo build --profile "$PROFILE" --locked --bin oms-sync
fi
rm -rf target/assets
"target/$DIR/oms-sync" generate-assets target/assets
# cargo-deb reads the assets' target/release/ paths from the profile's directory. The
# workspace also holds the fake OMS (crates/fake-oms): package the root crate only.
cargo deb -p oms-sync --no-build --profile "$PROFILE" "$@"
