//! `driftwatch enroll token create | list | revoke`, `driftwatch enroll list | revoke HOST`:
//! what an admin does about enrollment (role admin). The join token is printed once, on
//! standard output alone (so `> /etc/driftwatch/join-token` in an image pipeline captures it);
//! what it is for goes to standard error.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use driftwatch_proto::v1::{self, enrollment_client::EnrollmentClient};
use driftwatch_shell::{print, print_json, print_str};

use crate::{Transport, render};

#[derive(Debug, Subcommand)]
pub enum EnrollCommand {
    /// Join tokens: what an agent enrolls with (`--enroll-token-file`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Enrolled hosts, with their newest certificate.
    List {
        /// Print JSON (an array).
        #[arg(long)]
        json: bool,
    },
    /// Revoke every certificate issued to a host (refused from its next connection) and free
    /// its identity, so that a new machine may enroll under it.
    Revoke {
        /// The host's identity, as its certificate names it.
        host: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a join token and print it, once: the collector keeps only its hash.
    Create {
        /// How long it is accepted (`24h`, `7d`; at most 365d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// How many hosts may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Only hosts of this image may enroll with it: the cloud image id they run, or the
        /// image name their baseline was baked for.
        #[arg(long)]
        image: Option<String>,
        /// A name to list and revoke it by (default: one is made).
        #[arg(long)]
        name: Option<String>,
    },
    /// Every join token, revoked ones too (never their secrets).
    List {
        /// Print JSON (an array).
        #[arg(long)]
        json: bool,
    },
    /// Revoke the live join token of this name: no host enrolls with it any more (hosts
    /// enrolled with it keep their certificates).
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub async fn run(
    channel: Transport,
    command: EnrollCommand,
    rpc: impl Fn(tonic::Status) -> anyhow::Error,
) -> Result<i32> {
    let mut client = EnrollmentClient::new(channel);
    match command {
        EnrollCommand::Token {
            command:
                TokenCommand::Create {
                    ttl,
                    uses,
                    image,
                    name,
                },
        } => {
            let created = client
                .create_join_token(v1::CreateJoinTokenRequest {
                    name: name.unwrap_or_default(),
                    ttl_seconds: ttl.as_secs(),
                    uses,
                    image: image.unwrap_or_default(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if let Some(t) = &created.info {
                let image = match t.image.as_str() {
                    "" => String::new(),
                    image => format!(", image {image}"),
                };
                eprintln!(
                    "Join token {:?} created: {} enrollment{} until {}{image}. It is shown \
                     once, here; the collector keeps only its hash.",
                    t.name,
                    t.uses,
                    if t.uses == 1 { "" } else { "s" },
                    t.expires_at,
                );
            }
            print_str(&format!("{}\n", created.token))?;
        }
        EnrollCommand::Token {
            command: TokenCommand::List { json },
        } => {
            let tokens = client
                .list_join_tokens(v1::ListJoinTokensRequest {})
                .await
                .map_err(rpc)?
                .into_inner()
                .tokens;
            if json {
                print_json(&tokens)?;
            } else {
                print(|out| render::join_tokens(out, &tokens))?;
            }
        }
        EnrollCommand::Token {
            command: TokenCommand::Revoke { name },
        } => {
            let revoked = client
                .revoke_join_token(v1::RevokeJoinTokenRequest { name: name.clone() })
                .await
                .map_err(rpc)?
                .into_inner()
                .revoked;
            if !revoked {
                bail!(
                    "no live join token is named {name:?} (`driftwatch enroll token list` shows them)"
                );
            }
            eprintln!("Join token {name:?} revoked.");
        }
        EnrollCommand::List { json } => {
            let hosts = client
                .list_enrolled(v1::ListEnrolledRequest {})
                .await
                .map_err(rpc)?
                .into_inner()
                .hosts;
            if json {
                print_json(&hosts)?;
            } else {
                print(|out| render::enrolled(out, &hosts))?;
            }
        }
        EnrollCommand::Revoke { host } => {
            let answer = client
                .revoke_host(v1::RevokeHostRequest { host: host.clone() })
                .await
                .map_err(rpc)?
                .into_inner();
            if !answer.enrolled && answer.certificates == 0 {
                bail!(
                    "host {host:?} is not enrolled (`driftwatch enroll list` shows the hosts that are)"
                );
            }
            eprintln!(
                "Host {host:?} revoked: {} certificate{} refused from their next connection; \
                 the host may enroll again with a join token.",
                answer.certificates,
                if answer.certificates == 1 { "" } else { "s" }
            );
        }
    }
    Ok(0)
}
