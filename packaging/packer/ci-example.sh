#!/usr/bin/env bash
# An image pipeline for CI systems other than GitHub Actions (GitLab CI, Jenkins, Buildkite,
# a cron job): the same steps as github-actions.yml, as one shell script run from the
# driftwatch workspace root on a Debian/Ubuntu runner with Rust, Packer, cargo-deb and
# cargo-generate-rpm installed.
#
# What the CI system provides (its secret store and variables):
#   DRIFTWATCH_SIGNING_KEY_FILE  a file holding the baseline signing key (ci.key; secret)
#   DRIFTWATCH_PUBLIC_KEY_FILE   its public half (ci.pub)
#   IMAGE_VERSION                e.g. 2026.11.3
#   DRIFTWATCH_COLLECTOR         the collector's URL, for the manifest import (optional)
#   DRIFTWATCH_TOKEN             an operator token with the operator role (optional; secret)
#   DRIFTWATCH_CA                the collector's CA certificate, for https (optional)
set -euo pipefail
: "${DRIFTWATCH_SIGNING_KEY_FILE:?the signing key file (CI secret)}"
: "${DRIFTWATCH_PUBLIC_KEY_FILE:?the public key file}"
: "${IMAGE_VERSION:?the image version}"

# 1. The packages (release build), into dist/.
packaging/build-packages.sh

# 2. The image: Packer installs the .deb, configures the agent and bakes the signed baseline
#    as its last provisioning step (packaging/packer/provision.sh), then downloads the
#    baseline to build/web/baseline.dwb and writes packer-manifest.json.
packer init packaging/packer/driftwatch.pkr.hcl
packer build \
    -var "image_version=$IMAGE_VERSION" \
    -var "agent_package=$(ls dist/driftwatch-agent_*_amd64.deb)" \
    -var "signing_key_file=$DRIFTWATCH_SIGNING_KEY_FILE" \
    -var "public_key_file=$DRIFTWATCH_PUBLIC_KEY_FILE" \
    packaging/packer/driftwatch.pkr.hcl

# 3. The baseline the image carries: signed by the pipeline's key (a check on the runner).
target/release/driftwatch-agent baseline verify build/web/baseline.dwb \
    --public-key "$DRIFTWATCH_PUBLIC_KEY_FILE"

# 4. Tell the collector about the image: its AMI and the id of the baseline inside it, so that
#    hosts started from it are matched with it (and a host whose baseline differs is flagged
#    baseline_mismatch). Needs an operator token (`driftwatch-collector token create --role
#    operator`); the driftwatch CLI reads DRIFTWATCH_COLLECTOR, DRIFTWATCH_TOKEN and
#    DRIFTWATCH_CA from the environment.
if [ -n "${DRIFTWATCH_COLLECTOR:-}" ]; then
    target/release/driftwatch iac import --packer-manifest packer-manifest.json \
        --baseline build/web/baseline.dwb
fi
