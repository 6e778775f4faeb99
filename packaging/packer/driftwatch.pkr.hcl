# driftwatch in a Packer image pipeline: install the driftwatch-agent package, configure it,
# and bake a signed baseline as the last provisioning step (provision.sh does all three).
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

variable "agent_package" {
  type        = string
  description = "The driftwatch-agent .deb on the runner (packaging/build-packages.sh writes it to dist/)."
}

variable "signing_key_file" {
  type        = string
  description = "The baseline signing key (PKCS#8 PEM from `driftwatch-agent baseline keygen`), written to a file on the CI runner from the CI secret store."
  default     = env("DRIFTWATCH_SIGNING_KEY_FILE")
  sensitive   = true
}

variable "public_key_file" {
  type        = string
  description = "The signing key's public half (ci.pub); hosts refuse baselines it did not sign."
  default     = "ci.pub"
}

variable "collector_url" {
  type        = string
  description = "The collector agents stream to (https://HOST:7470); empty: agents run standalone."
  default     = ""
}

variable "collector_ca_file" {
  type        = string
  description = "The CA certificate (PEM) of the collector's certificate, on the runner."
  default     = ""
}

variable "join_token_file" {
  type        = string
  description = "A join token (dwj_..., `driftwatch enroll token create`) on the runner: each instance enrolls with it at first start. Empty: none."
  default     = ""
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

  # ... your provisioners first: everything that changes /etc, /usr, /boot must happen before
  # the bake below.

  # What provision.sh needs, uploaded to /dev/shm: a tmpfs, so none of it (the signing key
  # above all) reaches the disk that becomes the image.
  provisioner "file" {
    sources = compact([
      var.agent_package,
      var.public_key_file,
      var.collector_ca_file,
    ])
    destination = "/dev/shm/"
  }
  provisioner "file" {
    source      = var.signing_key_file
    destination = "/dev/shm/ci.key"
  }
  provisioner "file" {
    # Uploads an empty file when no token is given; provision.sh is then told none.
    content     = var.join_token_file == "" ? "" : file(var.join_token_file)
    destination = "/dev/shm/join-token"
  }

  # Install, configure, bake. Keep it last.
  provisioner "shell" {
    execute_command = "sudo env {{ .Vars }} sh -eu '{{ .Path }}'"
    script          = "${path.root}/provision.sh"
    environment_vars = [
      "DRIFTWATCH_PACKAGE=/dev/shm/${basename(var.agent_package)}",
      "DRIFTWATCH_SIGNING_KEY=/dev/shm/ci.key",
      "DRIFTWATCH_PUBLIC_KEY=/dev/shm/${basename(var.public_key_file)}",
      "DRIFTWATCH_IMAGE_NAME=${var.image_name}",
      "DRIFTWATCH_IMAGE_VERSION=${var.image_version}",
      "DRIFTWATCH_COLLECTOR_URL=${var.collector_url}",
      "DRIFTWATCH_COLLECTOR_CA=${var.collector_ca_file == "" ? "" : "/dev/shm/${basename(var.collector_ca_file)}"}",
      "DRIFTWATCH_JOIN_TOKEN_FILE=${var.join_token_file == "" ? "" : "/dev/shm/join-token"}",
      "DRIFTWATCH_BASELINE_EXPORT=/dev/shm/baseline.dwb",
    ]
  }

  # The baseline, for `iac import --baseline` and `baseline diff` between image versions.
  provisioner "file" {
    direction   = "download"
    source      = "/dev/shm/baseline.dwb"
    destination = "build/${source.name}/baseline.dwb"
  }

  post-processor "manifest" {
    output     = "packer-manifest.json"
    strip_path = true
    custom_data = {
      image_name    = var.image_name
      image_version = var.image_version
      baseline_file = "build/${source.name}/baseline.dwb"
    }
  }
  # Then, on the runner (ci-example.sh, github-actions.yml):
  #   driftwatch iac import --packer-manifest packer-manifest.json --baseline build/web/baseline.dwb
}
