#!/usr/bin/env bash
# Installs what the test suite needs on a clean Debian/Ubuntu machine (as root; a no-op when
# everything is there). The README's test command runs it first, and so does CI.
set -euo pipefail

# Tools the end-to-end tests call: setpriv (run as an unprivileged user), mkfifo, openssl
# (key interoperability, certificates), curl (the JSON API over mTLS), protoc (every .proto compiles with stock protoc).
need=()
command -v setpriv >/dev/null || need+=(util-linux)
command -v mkfifo >/dev/null || need+=(coreutils)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v python3 >/dev/null || need+=(python3)
# PostgreSQL 15 (Debian 12's default): the store conformance suite runs against a throwaway
# server it starts with initdb/pg_ctl (collector/src/store/postgres/tests.rs).
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
# python3-venv: the stock gRPC client test (grpcio from PyPI, below).
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
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
