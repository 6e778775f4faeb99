#!/bin/sh
# driftwatch's part of an image build, in one script: install the driftwatch-agent package,
# write the agent's configuration, then bake and sign the baseline as the very last change
# to the machine. Run as root on the machine that becomes the image, after every other
# provisioning step: whatever changes /etc, /usr, /boot ... after it is drift on every host
# started from the image. driftwatch.pkr.hcl runs it; tests/install.rs runs exactly this
# script in a Debian 12 root (chroot) to check what it leaves behind.
#
# Settings (environment):
#   DRIFTWATCH_PACKAGE          the driftwatch-agent .deb or .rpm, already on the machine (required)
#   DRIFTWATCH_SIGNING_KEY      the baseline signing key (`driftwatch-agent baseline keygen`);
#                               default /dev/shm/ci.key. Removed (shred) when the script exits,
#                               whatever happens: keep it on a tmpfs, never on the image's disk.
#   DRIFTWATCH_PUBLIC_KEY       its public half, installed as /etc/driftwatch/ci.pub (required):
#                               the agent refuses baselines it did not sign (public_key)
#   DRIFTWATCH_IMAGE_NAME       recorded in the baseline (e.g. web)                (required)
#   DRIFTWATCH_IMAGE_VERSION    recorded in the baseline (e.g. 2026.11.3)          (required)
#   DRIFTWATCH_COLLECTOR_URL    the collector, https://HOST:7470; unset: standalone (events to
#                               the journal)
#   DRIFTWATCH_COLLECTOR_CA     the CA certificate (PEM) the collector's certificate chains to;
#                               installed as /etc/driftwatch/collector-ca.pem (with an https URL)
#   DRIFTWATCH_JOIN_TOKEN_FILE  a join token (dwj_…, `driftwatch enroll token create`) the
#                               agent enrolls with at first start; installed as
#                               /etc/driftwatch/join-token (0600). Needs the https URL and CA.
#   DRIFTWATCH_BASELINE_EXPORT  where to leave a copy of the baseline for the pipeline to
#                               download (the state directory is private); default
#                               /dev/shm/baseline.dwb, "" for none
set -eu

signing_key=${DRIFTWATCH_SIGNING_KEY:-/dev/shm/ci.key}
# The key goes whatever happens below (set -e exits included).
trap 'shred -u "$signing_key" 2>/dev/null || rm -f "$signing_key"' EXIT

fail() {
    echo "provision.sh: $*" >&2
    exit 1
}
[ -n "${DRIFTWATCH_PACKAGE:-}" ] || fail "DRIFTWATCH_PACKAGE (the driftwatch-agent .deb or .rpm) is not set"
[ -f "$DRIFTWATCH_PACKAGE" ] || fail "DRIFTWATCH_PACKAGE=$DRIFTWATCH_PACKAGE: no such file"
[ -f "$signing_key" ] || fail "the signing key $signing_key is missing (DRIFTWATCH_SIGNING_KEY)"
[ -n "${DRIFTWATCH_PUBLIC_KEY:-}" ] && [ -f "$DRIFTWATCH_PUBLIC_KEY" ] \
    || fail "DRIFTWATCH_PUBLIC_KEY (the signing key's public half) is not set or missing"
[ -n "${DRIFTWATCH_IMAGE_NAME:-}" ] || fail "DRIFTWATCH_IMAGE_NAME is not set"
[ -n "${DRIFTWATCH_IMAGE_VERSION:-}" ] || fail "DRIFTWATCH_IMAGE_VERSION is not set"
if [ -n "${DRIFTWATCH_JOIN_TOKEN_FILE:-}" ] && [ -z "${DRIFTWATCH_COLLECTOR_CA:-}" ]; then
    fail "DRIFTWATCH_JOIN_TOKEN_FILE needs DRIFTWATCH_COLLECTOR_URL (https) and DRIFTWATCH_COLLECTOR_CA"
fi
chmod 600 "$signing_key"

# 1. The package: the binary, /etc/driftwatch/{agent.toml,rules.toml}, the unit (enabled,
#    started at boot once the baseline exists), the `driftwatch` user, /var/lib/driftwatch.
case "$DRIFTWATCH_PACKAGE" in
    *.deb) dpkg -i "$DRIFTWATCH_PACKAGE" ;;
    *.rpm) rpm -U --replacepkgs "$DRIFTWATCH_PACKAGE" ;;
    *) fail "DRIFTWATCH_PACKAGE=$DRIFTWATCH_PACKAGE is neither a .deb nor an .rpm" ;;
esac

# 2. The configuration. Everything here lands in /etc, so before the bake.
install -m 0644 "$DRIFTWATCH_PUBLIC_KEY" /etc/driftwatch/ci.pub
collector=""
if [ -n "${DRIFTWATCH_COLLECTOR_URL:-}" ]; then
    collector="
[collector]
url = \"$DRIFTWATCH_COLLECTOR_URL\""
    if [ -n "${DRIFTWATCH_COLLECTOR_CA:-}" ]; then
        install -m 0644 "$DRIFTWATCH_COLLECTOR_CA" /etc/driftwatch/collector-ca.pem
        collector="$collector
ca = \"/etc/driftwatch/collector-ca.pem\""
    fi
fi
enroll=""
if [ -n "${DRIFTWATCH_JOIN_TOKEN_FILE:-}" ]; then
    # Root-only: the agent reads it through CAP_DAC_READ_SEARCH. Its content is never
    # captured in the baseline (the default rules deny content of files named like tokens).
    install -m 0600 "$DRIFTWATCH_JOIN_TOKEN_FILE" /etc/driftwatch/join-token
    enroll="
[enroll]
token_file = \"/etc/driftwatch/join-token\""
fi
# The package's agent.toml (every key, commented, with its default) is replaced: this file
# says only what differs. A package upgrade then asks about it or keeps it
# (dpkg --force-confold), as for any changed conffile.
cat > /etc/driftwatch/agent.toml <<EOF
# driftwatch-agent configuration, written by the image pipeline (packaging/packer/provision.sh)
# for ${DRIFTWATCH_IMAGE_NAME} ${DRIFTWATCH_IMAGE_VERSION}. Every other key has its default (see
# driftwatch-agent(1) and packaging/agent.toml in the driftwatch sources).
baseline = "/var/lib/driftwatch/baseline.dwb"
state_dir = "/var/lib/driftwatch"
public_key = "/etc/driftwatch/ci.pub"
$collector
$enroll
EOF
chmod 0644 /etc/driftwatch/agent.toml

# 3. The bake, last. Each instance generates its own machine id at first boot (the file is
#    excluded from the baseline by the default rules).
if [ -e /etc/machine-id ]; then
    truncate -s 0 /etc/machine-id
fi
install -d -m 0700 -o driftwatch -g driftwatch /var/lib/driftwatch
# --json prints the summary, baseline_id included, to the build log.
driftwatch-agent baseline build --root / --config /etc/driftwatch/rules.toml \
    --image-name "$DRIFTWATCH_IMAGE_NAME" --image-version "$DRIFTWATCH_IMAGE_VERSION" \
    --signing-key "$signing_key" --out /var/lib/driftwatch/baseline.dwb --json
# Signed by the key the hosts trust, and the configuration systemd checks before each start.
driftwatch-agent baseline verify /var/lib/driftwatch/baseline.dwb --public-key /etc/driftwatch/ci.pub
driftwatch-agent validate --config /etc/driftwatch/agent.toml

export_to=${DRIFTWATCH_BASELINE_EXPORT-/dev/shm/baseline.dwb}
if [ -n "$export_to" ]; then
    install -m 0644 /var/lib/driftwatch/baseline.dwb "$export_to"
fi
