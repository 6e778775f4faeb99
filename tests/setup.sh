#!/usr/bin/env bash
# Installs what the test suite needs on a clean Debian/Ubuntu machine (as root; a no-op when
# everything is there). The README's test command runs it first, and so does CI.
set -euo pipefail

# Tools the end-to-end tests call: setpriv (run as an unprivileged user), mkfifo, openssl
# (key interoperability, certificates), curl (the JSON API over mTLS), protoc (every .proto compiles with stock protoc),
# git (`driftwatch reconcile` commits to a real repository, tests/reconcile.rs).
need=()
command -v setpriv >/dev/null || need+=(util-linux)
command -v mkfifo >/dev/null || need+=(coreutils)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v git >/dev/null || need+=(git)
command -v python3 >/dev/null || need+=(python3)
# PostgreSQL 15 (Debian 12's default): the store conformance suite runs against a throwaway
# server it starts with initdb/pg_ctl (collector/src/store/postgres/tests.rs).
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
# python3-venv: the stock gRPC client test (grpcio from PyPI, below).
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# The packages (tests/packages.rs): strip and dpkg-shlibdeps for packaging/build-packages.sh
# and cargo-deb, rpm to read the .rpm (Debian's rpm), lintian on the .deb, debootstrap for
# the Debian 12 root the .deb is installed into, systemd-analyze to verify the units.
command -v strip >/dev/null || need+=(binutils)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v rpm >/dev/null || need+=(rpm)
command -v lintian >/dev/null || need+=(lintian)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "tests/setup.sh: missing ${need[*]}; run it as root (or install them) first" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A gRPC client nobody here wrote, for tests/collector.rs: Python's grpcio with reflection and
# health checking (grpcurl is not packaged for Debian 12).
venv=/opt/driftwatch-venv
if ! "$venv/bin/python3" -c 'import grpc, grpc_reflection, grpc_health' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        grpcio grpcio-reflection grpcio-health-checking
fi

# cargo-deb and cargo-generate-rpm (packaging/build-packages.sh), at the versions the package
# metadata was written for. Built from source: a few minutes, once.
if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.8\.'; then
    cargo install cargo-deb --version 3.8.0 --locked
fi
if ! cargo generate-rpm --version 2>/dev/null | grep -q ' 0\.21\.'; then
    cargo install cargo-generate-rpm --version 0.21.1 --locked
fi
