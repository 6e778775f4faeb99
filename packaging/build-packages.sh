#!/usr/bin/env bash
# Builds the driftwatch packages into dist/ (or --out DIR):
#   driftwatch-agent_VERSION-1_ARCH.deb         driftwatch-agent-VERSION-1.ARCH.rpm
#   driftwatch-collector_VERSION-1_ARCH.deb     driftwatch-collector-VERSION-1.ARCH.rpm
# with cargo-deb and cargo-generate-rpm (`cargo install cargo-deb cargo-generate-rpm --locked`;
# tests/setup.sh installs them), from the [package.metadata.deb] and
# [package.metadata.generate-rpm] tables of agent/Cargo.toml and collector/Cargo.toml.
#
#   packaging/build-packages.sh                 # release build, then the four packages
#   packaging/build-packages.sh --profile dev --no-build --fast   # what tests/packages.rs does
#
# Steps: build the three binaries (cargo build --profile PROFILE, unless --no-build); stage
# each in dist/.stage/NAME/ stripped, with its man pages (gzipped) and its bash, zsh and
# fish completions, written by the binary itself (`NAME generate-docs`, hidden); then
# package what is staged (cargo deb --no-build, so cargo-deb never builds). The packages
# hold only staged and packaging/ files, so the same metadata packages a release build or
# the tests' dev build. Packages to ship come from the release profile; the tests package
# the dev build they already have rather than spend a release build (many minutes on a
# 2-core CI machine) on checking what goes where.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=1
out=dist
fast=()
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --out) out="$2"; shift 2 ;;
        # Quicker, larger .debs (cargo-deb's --fast compression), for tests.
        --fast) fast=(--fast); shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "build-packages.sh: unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done

for tool in cargo-deb cargo-generate-rpm; do
    if ! command -v "$tool" >/dev/null; then
        echo "build-packages.sh: $tool is missing: cargo install cargo-deb cargo-generate-rpm --locked (or run tests/setup.sh)" >&2
        exit 1
    fi
done

# Where cargo put the binaries: target/<profile dir>, wherever the target directory is.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
case "$profile" in
    dev) profile_dir=debug ;;
    *) profile_dir=$profile ;;
esac
bins="$target_dir/$profile_dir"

if [ "$build" = 1 ]; then
    cargo build --profile "$profile" -p driftwatch-agent -p driftwatch-collector -p driftwatch-cli
fi

# The staging directory the packages' metadata names (agent/Cargo.toml,
# collector/Cargo.toml), whatever --out says.
stage=dist/.stage
rm -rf "$stage"
for name in driftwatch-agent driftwatch-collector driftwatch; do
    if [ ! -x "$bins/$name" ]; then
        echo "build-packages.sh: $bins/$name is missing (build it, or drop --no-build)" >&2
        exit 1
    fi
    mkdir -p "$stage/$name"
    # As dh_strip does: no symbols, no .comment or .note sections.
    strip --strip-unneeded --remove-section=.comment --remove-section=.note \
        -o "$stage/$name/$name" "$bins/$name"
    "$stage/$name/$name" generate-docs --out "$stage/$name"
    gzip -9n "$stage/$name"/man/*.1
done

mkdir -p "$out"
cargo deb -p driftwatch-agent --no-build --no-strip "${fast[@]}" --output "$out/"
cargo deb -p driftwatch-collector --no-build --no-strip "${fast[@]}" --output "$out/"
cargo generate-rpm -p agent --output "$out/"
cargo generate-rpm -p collector --output "$out/"
ls -l "$out"/*.deb "$out"/*.rpm
