//! `driftwatch iac import | status` and `driftwatch report`. Imports read Terraform/OpenTofu
//! states, Pulumi stack exports, CloudFormation stack resources (with EC2's description of
//! their instances) and Packer manifests.
//!
//! Imports parse the file here, on the operator's machine, and send the collector only the
//! allow-listed attributes (see `driftwatch_iac`): the secrets a state holds never travel.

use std::fs::File;
use std::io::{self, IsTerminal as _, Read};
use std::path::{Path, PathBuf};

use crate::Transport;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use driftwatch_proto::v1::{self, iac_client::IacClient};
use driftwatch_shell::{print, print_json, print_str};

use crate::render;
use driftwatch_iac::{cloudformation, import, packer, pulumi, tfstate};

#[derive(Debug, Subcommand)]
pub enum IacCommand {
    /// Import a Terraform/OpenTofu state, a Pulumi stack, a CloudFormation stack or a Packer
    /// manifest into the collector.
    Import(ImportArgs),
    /// Coverage, flagged hosts (unmanaged, wrong image, ...) and ghost instances.
    Status {
        /// An instance whose host has not reported for this long is a ghost (default: the
        /// collector's, 15m).
        #[arg(long)]
        ghost_after: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(
    ["terraform_state", "pulumi_stack", "cloudformation", "packer_manifest"]
))]
pub struct ImportArgs {
    /// A state (`terraform.tfstate`, `terraform state pull` output, or `terraform show
    /// -json`); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub terraform_state: Option<PathBuf>,
    /// A Pulumi stack (`pulumi stack export` output); `-` reads standard input. Read: the AWS,
    /// GCP and Azure instances, launch templates and autoscaling groups, with their images.
    #[arg(long, value_name = "FILE")]
    pub pulumi_stack: Option<PathBuf>,
    /// A CloudFormation stack's resources (`aws cloudformation describe-stack-resources
    /// --stack-name NAME` output); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub cloudformation: Option<PathBuf>,
    /// The stack's instances (`aws ec2 describe-instances` output), for their images and
    /// addresses; without it, instances are imported without them.
    #[arg(long, value_name = "FILE", requires = "cloudformation")]
    pub instances: Option<PathBuf>,
    /// The name to store the state under (default: a state's lineage, a Pulumi stack's
    /// `PROJECT/STACK`, a CloudFormation stack's name). Importing the same name again replaces
    /// it.
    #[arg(long, conflicts_with = "packer_manifest")]
    pub name: Option<String>,
    /// A Packer manifest (`packer-manifest.json` from the manifest post-processor).
    #[arg(long, value_name = "FILE")]
    pub packer_manifest: Option<PathBuf>,
    /// The baseline file baked in the manifest's last run (when `custom_data` does not name
    /// its id).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["terraform_state", "pulumi_stack", "cloudformation"]
    )]
    pub baseline: Option<PathBuf>,
    /// Largest input read, in MiB.
    #[arg(long, default_value_t = 512)]
    pub max_mib: u64,
    /// Print JSON (what was imported).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Markdown (to paste into a pull request or a ticket) or JSON.
    #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
    pub format: ReportFormat,
    /// Only drift of at least this severity.
    #[arg(long)]
    pub severity: Option<String>,
    /// An instance whose host has not reported for this long is a ghost (default: the
    /// collector's, 15m).
    #[arg(long)]
    pub ghost_after: Option<String>,
}

/// The input, or standard input for `-`.
fn open(path: &Path) -> Result<Box<dyn Read>> {
    if path == Path::new("-") {
        if io::stdin().is_terminal() {
            bail!("`-` reads the input from standard input, which is a terminal");
        }
        return Ok(Box::new(io::stdin().lock()));
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Box::new(file))
}

pub async fn import(
    channel: Transport,
    args: ImportArgs,
    rpc: impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<i32> {
    let max = args.max_mib.saturating_mul(1 << 20);
    let mut client = IacClient::new(channel).max_encoding_message_size(usize::MAX);
    let result = if let Some(path) = &args.terraform_state {
        let shown = path.display().to_string();
        let summary = tfstate::parse_state_limited(open(path)?, max)
            .with_context(|| format!("cannot import {shown}"))?;
        let name = match &args.name {
            Some(n) => n.clone(),
            None => import::default_state_name(&summary, &shown),
        };
        send_state(&mut client, summary, &name, &shown, &rpc).await?
    } else if let Some(path) = &args.pulumi_stack {
        let shown = path.display().to_string();
        let export = pulumi::parse_export_limited(open(path)?, max)
            .with_context(|| format!("cannot import {shown}"))?;
        let name = match (&args.name, export.default_name()) {
            (Some(n), _) => n.clone(),
            (None, Some(n)) => n,
            (None, None) => import::default_state_name(&export.summary, &shown),
        };
        send_state(&mut client, export.summary, &name, &shown, &rpc).await?
    } else if let Some(path) = &args.cloudformation {
        let shown = path.display().to_string();
        if args.instances.as_deref() == Some(Path::new("-")) && path == Path::new("-") {
            bail!("`--cloudformation -` and `--instances -` cannot both read standard input");
        }
        let instances = match &args.instances {
            Some(file) => {
                let shown = file.display().to_string();
                let instances = cloudformation::parse_instances_limited(open(file)?, max)
                    .with_context(|| format!("cannot read instances from {shown}"))?;
                for warning in &instances.warnings {
                    eprintln!("warning: {shown}: {warning}");
                }
                Some(instances)
            }
            None => None,
        };
        let stack = cloudformation::parse_stack_limited(open(path)?, max, instances.as_ref())
            .with_context(|| format!("cannot import {shown}"))?;
        let name = match (&args.name, &stack.name) {
            (Some(n), _) | (None, Some(n)) => n.clone(),
            (None, None) => import::default_state_name(&stack.summary, &shown),
        };
        send_state(&mut client, stack.summary, &name, &shown, &rpc).await?
    } else if let Some(path) = &args.packer_manifest {
        let shown = path.display().to_string();
        let manifest = packer::parse_manifest_limited(open(path)?, max)
            .with_context(|| format!("cannot import {shown}"))?;
        for build in manifest.not_cloud_images() {
            eprintln!(
                "warning: {shown}: build {:?} ({}) made {:?}, not a cloud image: skipped",
                build.name, build.builder_type, build.artifact_id
            );
        }
        let baseline = match &args.baseline {
            Some(file) => Some(baseline_id(file)?),
            None => None,
        };
        let request = import::manifest_request(&manifest, &shown, baseline.as_deref())
            .with_context(|| format!("cannot import {shown}"))?;
        client
            .import_manifest(request)
            .await
            .map_err(&rpc)
            .with_context(|| format!("cannot import {shown}"))?
            .into_inner()
    } else {
        unreachable!("clap requires one input");
    };
    if args.json {
        print_json(&result)?;
    } else {
        print(|out| writeln!(out, "{}", result.summary))?;
    }
    Ok(0)
}

/// Sends a parsed state (of any kind) after printing its warnings.
async fn send_state(
    client: &mut IacClient<Transport>,
    summary: tfstate::StateSummary,
    name: &str,
    shown: &str,
    rpc: impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<v1::ImportResult> {
    for warning in &summary.warnings {
        eprintln!("warning: {shown}: {warning}");
    }
    let request = import::state_request(summary, name, shown);
    import::validate_state(&request).with_context(|| format!("cannot import {shown}"))?;
    Ok(client
        .import_state(request)
        .await
        .map_err(rpc)
        .with_context(|| format!("cannot import {shown}"))?
        .into_inner())
}

pub async fn status(
    channel: Transport,
    ghost_after: Option<String>,
    json: bool,
    rpc: impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<i32> {
    let status = IacClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .status(v1::IacStatusRequest {
            ghost_after: ghost_after.unwrap_or_default(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    if json {
        print_json(&status)?;
    } else {
        print(|out| render::iac_status(out, &status))?;
    }
    Ok(0)
}

pub async fn report(
    channel: Transport,
    args: ReportArgs,
    rpc: impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<i32> {
    let report = IacClient::new(channel)
        .max_decoding_message_size(1 << 30)
        .report(v1::ReportRequest {
            ghost_after: args.ghost_after.unwrap_or_default(),
            severity: args.severity.unwrap_or_default(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    match args.format {
        ReportFormat::Json => print_json(&report)?,
        ReportFormat::Markdown => print_str(&render::report_markdown(&report))?,
    };
    Ok(0)
}

/// The id of a baseline file (`--baseline` of a manifest import), refusing a file that is not
/// an intact baseline.
fn baseline_id(path: &std::path::Path) -> Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read baseline {}", path.display()))?;
    let loaded = driftwatch_proto::baseline::decode(&bytes)
        .with_context(|| format!("refusing baseline {}", path.display()))?;
    Ok(loaded.id.to_hex())
}
