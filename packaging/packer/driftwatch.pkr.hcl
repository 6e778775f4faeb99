# driftwatch in a Packer image pipeline: bake a signed baseline as the last provisioning step.
# Merge the variables, provisioners and post-processors into your own template; see README.md.

packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "image_name" {
  type    = string
  default = "web"
}

variable "image_version" {
  type        = string
  description = "e.g. the CI pipeline's version: 2026.11.3"
}

variable "signing_key_file" {
  type        = string
  description = "The baseline signing key (PKCS#8 PEM from `driftwatch-agent baseline keygen`), written to a file on the CI runner from the CI secret store."
  default     = env("DRIFTWATCH_SIGNING_KEY_FILE")
  sensitive   = true
}

source "amazon-ebs" "web" {
  region        = "eu-west-1"
  instance_type = "t3.small"
  ssh_username  = "ubuntu"
  ami_name      = "${var.image_name}-${var.image_version}"
  source_ami_filter {
    filters = {
      name                = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
      virtualization-type = "hvm"
    }
    owners      = ["099720109477"]
    most_recent = true
  }
}

build {
  sources = ["source.amazon-ebs.web"]

  # ... your provisioners, then driftwatch itself, before the bake: /usr/bin/driftwatch-agent,
  # /etc/driftwatch/{agent.toml,rules.toml,ci.pub}, the unit, the `driftwatch` user
  # (systemd-sysusers) and `systemctl enable driftwatch-agent`. All of that lands in /etc and
  # /usr, so it must exist when the baseline is taken.

  # The signing key goes to /dev/shm: tmpfs, so it never touches the disk that becomes the image.
  provisioner "file" {
    source      = var.signing_key_file
    destination = "/dev/shm/ci.key"
  }

  # The bake. Keep it last: whatever changes /etc, /usr, /boot ... after it is drift on every
  # host started from this image.
  provisioner "shell" {
    execute_command = "sudo sh -eu '{{ .Path }}'"
    inline = [
      # Removes the key whatever happens below.
      "trap 'shred -u /dev/shm/ci.key' EXIT",
      "chmod 600 /dev/shm/ci.key",
      # Each instance generates its own machine id at first boot (the file is excluded from the
      # baseline by the default rules).
      "truncate -s 0 /etc/machine-id",
      "install -d -m 0700 /var/lib/driftwatch",
      # --json prints the summary, baseline_id included, to the build log.
      "driftwatch-agent baseline build --root / --config /etc/driftwatch/rules.toml --image-name '${var.image_name}' --image-version '${var.image_version}' --signing-key /dev/shm/ci.key --out /var/lib/driftwatch/baseline.dwb --json",
      "driftwatch-agent baseline verify /var/lib/driftwatch/baseline.dwb --public-key /etc/driftwatch/ci.pub",
      "driftwatch-agent validate --config /etc/driftwatch/agent.toml",
      # A copy the SSH user can download (the state directory is 0700 root); tmpfs again.
      "install -m 0644 /var/lib/driftwatch/baseline.dwb /dev/shm/baseline.dwb",
    ]
  }

  provisioner "file" {
    direction   = "download"
    source      = "/dev/shm/baseline.dwb"
    destination = "build/${source.name}/baseline.dwb"
  }

  post-processors {
    post-processor "manifest" {
      output     = "packer-manifest.json"
      strip_path = true
      custom_data = {
        image_name    = var.image_name
        image_version = var.image_version
        baseline_file = "build/${source.name}/baseline.dwb"
        # Filled in by the next step: the id only exists once the VM has baked the baseline,
        # and custom_data is evaluated on the runner before that.
        baseline_id = ""
      }
    }

    # Runs on the CI runner (needs driftwatch-agent and jq there).
    post-processor "shell-local" {
      inline = [
        "id=$(driftwatch-agent baseline show --json 'build/${source.name}/baseline.dwb' | jq -r .baseline_id)",
        "echo \"driftwatch baseline_id=$id\"",
        "jq --arg id \"$id\" --arg file 'build/${source.name}/baseline.dwb' '.last_run_uuid as $run | .builds |= map(if .packer_run_uuid == $run and .custom_data.baseline_file == $file then .custom_data.baseline_id = $id else . end)' packer-manifest.json > packer-manifest.json.tmp",
        "mv packer-manifest.json.tmp packer-manifest.json",
      ]
    }
  }
}
