//! Load generator for the collector benchmarks (`bench/collector.sh` runs it).
//!
//! `ingest`: N simulated agents, each on its own gRPC connection (a real TCP connection, a real
//! HTTP/2 stream), say hello, then send event batches as fast as the collector acknowledges
//! them for a while, heartbeating every few seconds; reports events/s acknowledged (i.e.
//! committed), connections held, and the collector's RSS.
//!
//! `populate` + `query`: fills a collector with H hosts × I drift items, then measures fleet
//! query latency through the gRPC API.
//!
//! `enroll`: N hosts enroll over TLS with one join token (keys and CSRs made beforehand, as
//! each host makes its own), C at a time; reports certificates issued per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use driftwatch_proto::v1::{self, agent_message, collector_message};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::transport::{Channel, Endpoint};

/// The allocator of the `driftwatch` CLI, so query timings are what an operator's CLI sees.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    /// The collector's URL; for `ingest`, several separated by commas (replicas): agent i
    /// connects to the i-th modulo their number.
    #[arg(long, default_value = "http://127.0.0.1:7470")]
    collector: String,
    /// The collector's pid, to report its memory.
    #[arg(long)]
    collector_pid: Option<u32>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sustained ingest from many agents.
    Ingest {
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Of those, how many send events (the rest only heartbeat).
        #[arg(long)]
        senders: Option<usize>,
        #[arg(long, default_value_t = 50)]
        batch: usize,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Host-id prefix (distinct runs, distinct hosts).
        #[arg(long, default_value = "load")]
        prefix: String,
    },
    /// Stores HOSTS hosts with ITEMS drift items each.
    Populate {
        #[arg(long, default_value_t = 10_000)]
        hosts: usize,
        #[arg(long, default_value_t = 50)]
        items: usize,
        #[arg(long, default_value_t = 200)]
        parallel: usize,
    },
    /// Enrollment rate: HOSTS enrollments with one join token, CONCURRENCY at a time.
    Enroll {
        #[arg(long, default_value_t = 1000)]
        hosts: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// The join token (with at least HOSTS uses).
        #[arg(long)]
        token: String,
        /// The CA that verifies the collector.
        #[arg(long)]
        ca: std::path::PathBuf,
        /// Also write the CSRs to this directory (csr-N.pem), for the peer to sign.
        #[arg(long)]
        csr_dir: Option<std::path::PathBuf>,
    },
    /// Query latency, p50/p99, per query kind.
    Query {
        #[arg(long, default_value_t = 200)]
        samples: usize,
        #[arg(long, default_value_t = 10_000)]
        hosts: usize,
        /// Present this operator token (to measure the access check).
        #[arg(long)]
        token: Option<String>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Ingest {
            agents,
            senders,
            batch,
            duration,
            ref prefix,
        } => {
            ingest(
                &cli,
                agents,
                senders.unwrap_or(agents),
                batch,
                duration,
                prefix,
            )
            .await
        }
        Cmd::Populate {
            hosts,
            items,
            parallel,
        } => populate(&cli.collector, hosts, items, parallel).await,
        Cmd::Query {
            samples,
            hosts,
            token,
        } => query(&cli.collector, samples, hosts, token).await,
        Cmd::Enroll {
            hosts,
            concurrency,
            ref token,
            ref ca,
            ref csr_dir,
        } => {
            enroll(
                &cli.collector,
                hosts,
                concurrency,
                token,
                ca,
                csr_dir.as_deref(),
            )
            .await
        }
    }
}

/// Enrolls `hosts` hosts, `concurrency` at a time, each on its own TLS connection (as agents
/// do); prints the rate of certificates issued.
async fn enroll(
    url: &str,
    hosts: usize,
    concurrency: usize,
    token: &str,
    ca: &std::path::Path,
    csr_dir: Option<&std::path::Path>,
) -> Result<()> {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let started = Instant::now();
    let mut csrs = Vec::with_capacity(hosts);
    for i in 0..hosts {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            format!("driftwatch:host:enroll-{i}").try_into()?,
        )];
        let pem = params.serialize_request(&key)?.pem()?;
        if let Some(dir) = csr_dir {
            std::fs::write(dir.join(format!("csr-{i}.pem")), &pem)?;
        }
        csrs.push(pem);
    }
    let made = started.elapsed();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca)?));
    let endpoint = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(30))
        .tls_config(tls)?;
    let queue = Arc::new(std::sync::Mutex::new(csrs));
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, issued, endpoint, token) = (
            queue.clone(),
            issued.clone(),
            endpoint.clone(),
            token.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(csr_pem) = queue.lock().unwrap().pop() else {
                    return Ok::<_, anyhow::Error>(());
                };
                // A host enrolls once, on a connection of its own.
                let mut client =
                    v1::enrollment_client::EnrollmentClient::new(endpoint.connect().await?);
                client
                    .enroll(v1::EnrollRequest {
                        join_token: token.clone(),
                        csr_pem,
                        ..Default::default()
                    })
                    .await?;
                issued.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = issued.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "issued": n,
            "seconds": elapsed,
            "per_second": n as f64 / elapsed,
            "csr_seconds": made.as_secs_f64(),
        })
    );
    Ok(())
}

/// A realistic drift item: a config file edited (with a diff) on `host`.
fn item(i: usize, variant: usize) -> v1::DriftItem {
    use driftwatch_proto::baseline::FileKind;
    use driftwatch_proto::drift::{Attr, DriftItem, DriftKind, Facts, FileDrift, Severity};
    let severity = match i % 10 {
        0 => Severity::Security,
        1..=6 => Severity::Behavioral,
        _ => Severity::Cosmetic,
    };
    let dir = [
        "etc/ssh",
        "etc/nginx/conf.d",
        "etc/systemd/system",
        "usr/local/bin",
        "etc",
    ][i % 5];
    let facts = |size: u64, hash: usize| {
        let mut sha256 = [0u8; 32];
        sha256[24..].copy_from_slice(&(hash as u64).to_be_bytes());
        Facts {
            kind: FileKind::Regular,
            mode: 0o644,
            owner: 0,
            group: 0,
            size,
            sha256: Some(sha256),
            target: None,
            xattrs: vec![],
        }
    };
    DriftItem::File(Box::new(FileDrift {
        path: format!("/{dir}/file-{i:03}.conf").into(),
        kind: DriftKind::Modified,
        changed: vec![Attr::Size, Attr::Content],
        severity,
        reason: "configuration or binary changed".into(),
        expected: Some(facts(120, i)),
        actual: Some(facts(121, i * 1000 + variant % 3)),
        diff: Some(format!(
            "--- a/{dir}/file-{i:03}.conf\n+++ b/{dir}/file-{i:03}.conf\n@@ -1 +1 @@\n-workers = 4\n+workers = {}\n",
            variant % 3
        )),
    }))
    .to_wire()
}

fn hello(host: &str, stream: &str) -> v1::AgentMessage {
    v1::AgentMessage {
        body: Some(agent_message::Body::Hello(v1::Hello {
            protocol_version: v1::PROTOCOL_VERSION,
            identity: Some(v1::HostIdentity {
                host: host.into(),
                source: "identity_file".into(),
                hostname: format!("{host}.internal"),
                instance_id: host.into(),
                image_id: "ami-0bench".into(),
                ..Default::default()
            }),
            agent_version: "loadgen".into(),
            baseline_id: "b".repeat(64),
            image_name: "bench".into(),
            image_version: "1".into(),
            boot_id: "boot".into(),
            stream_id: stream.into(),
            last_seq: 0,
            oldest_seq: 0,
        })),
    }
}

async fn channel(url: &str) -> Result<Channel> {
    Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// A stream said hello to and welcomed: what to send on, what comes back, and the welcome.
type Opened = (
    mpsc::Sender<v1::AgentMessage>,
    tonic::Streaming<v1::CollectorMessage>,
    v1::Welcome,
);

/// Connects and says hello, once.
async fn open(url: &str, host: &str) -> Result<Opened> {
    let mut client = v1::ingest_client::IngestClient::new(channel(url).await?);
    let (tx, rx) = mpsc::channel(4);
    tx.send(hello(host, &format!("{host}-s"))).await?;
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let Some(first) = inbound.next().await else {
        bail!("no welcome")
    };
    match first?.body {
        Some(collector_message::Body::Welcome(w)) => Ok((tx, inbound, w)),
        _ => bail!("expected a welcome"),
    }
}

/// Connects and says hello as an agent does: a connection refused or reset while thousands
/// arrive at once is tried again after a pause that grows (and differs between agents, as the
/// agent's jitter does). Each retry is counted in `retries`.
async fn open_retrying(url: &str, host: &str, index: usize, retries: &AtomicU64) -> Result<Opened> {
    let mut pause = Duration::from_millis(100 + (index % 100) as u64 * 5);
    for attempt in 1.. {
        match open(url, host).await {
            Ok(opened) => return Ok(opened),
            Err(e) if attempt >= 5 => return Err(e.context(format!("{attempt} attempts"))),
            Err(_) => {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    unreachable!("the loop returns")
}

/// One simulated agent: hello, then batches (each waits for its ack) until `stop`.
#[allow(clippy::too_many_arguments)]
async fn agent(
    url: String,
    index: usize,
    host: String,
    send: bool,
    batch: usize,
    stop: Instant,
    acked: Arc<AtomicU64>,
    connected: Arc<AtomicUsize>,
    retries: Arc<AtomicU64>,
    heartbeat: Duration,
) -> Result<()> {
    let (tx, mut inbound, welcome) = open_retrying(&url, &host, index, &retries).await?;
    connected.fetch_add(1, Ordering::Relaxed);
    let mut seq = welcome.last_seq;
    let mut next_heartbeat = Instant::now() + heartbeat;
    while Instant::now() < stop {
        if Instant::now() >= next_heartbeat {
            next_heartbeat += heartbeat;
            tx.send(v1::AgentMessage {
                body: Some(agent_message::Body::Heartbeat(v1::Heartbeat {
                    seq,
                    digest: vec![0; 32],
                    items: 0,
                    ..Default::default()
                })),
            })
            .await?;
        }
        if !send {
            tokio::time::sleep_until(next_heartbeat.min(stop).into()).await;
            continue;
        }
        let events = (0..batch)
            .map(|i| {
                let s = seq + 1 + i as u64;
                v1::Event {
                    seq: s,
                    transition: if s <= 50 {
                        v1::Transition::Drifted
                    } else {
                        v1::Transition::Changed
                    } as i32,
                    observed_at: "2026-11-22T00:00:00.000Z".into(),
                    item: Some(item((s as usize - 1) % 50, s as usize)),
                }
            })
            .collect();
        tx.send(v1::AgentMessage {
            body: Some(agent_message::Body::Batch(v1::EventBatch { events })),
        })
        .await?;
        loop {
            match inbound.next().await {
                Some(Ok(v1::CollectorMessage {
                    body: Some(collector_message::Body::Ack(a)),
                })) => {
                    acked.fetch_add(a.seq - seq, Ordering::Relaxed);
                    seq = a.seq;
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(s)) => bail!("{host}: {s}"),
                None => bail!("{host}: stream ended"),
            }
        }
    }
    // Hold the stream (and the connection) until everyone is done.
    drop(tx);
    Ok(())
}

async fn ingest(
    cli: &Cli,
    agents: usize,
    senders: usize,
    batch: usize,
    duration: Duration,
    prefix: &str,
) -> Result<()> {
    let acked = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let ramp = Duration::from_secs((agents as u64 / 500).max(2));
    let stop = Instant::now() + ramp + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let urls: Vec<&str> = cli.collector.split(',').collect();
    for i in 0..agents {
        tasks.spawn(agent(
            urls[i % urls.len()].to_owned(),
            i,
            format!("{prefix}-{i:05}"),
            i < senders,
            batch,
            stop,
            acked.clone(),
            connected.clone(),
            retries.clone(),
            Duration::from_secs(5),
        ));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Measure the steady state only: after the ramp-up.
    tokio::time::sleep_until((stop - duration).into()).await;
    let (start_acked, start) = (acked.load(Ordering::Relaxed), Instant::now());
    let mut peak_rss = 0;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_rss = peak_rss.max(rss_kib(cli.collector_pid));
    }
    let events = acked.load(Ordering::Relaxed) - start_acked;
    let secs = start.elapsed().as_secs_f64();
    let held = connected.load(Ordering::Relaxed);
    let mut failures = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) | Err(e) = r.map_err(anyhow::Error::from) {
            failures += 1;
            if failures <= 3 {
                eprintln!("agent failed: {e:#}");
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "agents": agents,
            "senders": senders,
            "batch": batch,
            "connected": held,
            "failed_agents": failures,
            "connect_retries": retries.load(Ordering::Relaxed),
            "events_acked": events,
            "seconds": secs,
            "events_per_second": events as f64 / secs,
            "collector_peak_rss_mib": peak_rss as f64 / 1024.0,
        })
    );
    Ok(())
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn populate(url: &str, hosts: usize, items: usize, parallel: usize) -> Result<()> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (url, next) = (url.to_string(), next.clone());
        tasks.spawn(async move {
            let mut client = v1::ingest_client::IngestClient::new(channel(&url).await?);
            loop {
                let h = next.fetch_add(1, Ordering::Relaxed);
                if h >= hosts {
                    return anyhow::Ok(());
                }
                let host = format!("i-{h:017x}");
                let (tx, rx) = mpsc::channel(4);
                tx.send(hello(&host, "populate")).await?;
                let mut inbound = client
                    .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await?
                    .into_inner();
                let welcome = inbound.next().await.context("no welcome")??;
                let last = match welcome.body {
                    Some(collector_message::Body::Welcome(w)) => w.last_seq,
                    _ => bail!("expected a welcome"),
                };
                let events: Vec<v1::Event> = (last as usize..items)
                    .map(|i| v1::Event {
                        seq: i as u64 + 1,
                        transition: v1::Transition::Drifted as i32,
                        observed_at: "2026-11-22T00:00:00.000Z".into(),
                        // Hosts share changes in groups of seven (for `causes`).
                        item: Some(item(i, h % 7)),
                    })
                    .collect();
                if !events.is_empty() {
                    tx.send(v1::AgentMessage {
                        body: Some(agent_message::Body::Batch(v1::EventBatch { events })),
                    })
                    .await?;
                    inbound.next().await.context("no ack")??;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    eprintln!(
        "populated {hosts} hosts x {items} items in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Untimed queries of each kind before the timed ones.
const WARM_UP: usize = 5;

async fn query(url: &str, samples: usize, hosts: usize, token: Option<String>) -> Result<()> {
    // The CLI's own client, so timings are what an operator's CLI sees.
    let mut client = driftwatch_cli::connect(&driftwatch_cli::Connection {
        collector: url.to_string(),
        ca: None,
        cert: None,
        key: None,
        // Never the user's token file.
        token: Some(token.unwrap_or_default()),
    })
    .await?;
    const KINDS: [&str; 6] = [
        "hosts_diverged",
        "hosts_diverged_security",
        "host",
        "paths_glob",
        "paths",
        "causes",
    ];
    let mut times = vec![Vec::with_capacity(samples); KINDS.len()];
    let mut rows = [0; KINDS.len()];
    // Round robin over the kinds, so whatever else the machine does falls on all of them
    // alike. The first rounds are untimed: the first listing after a hello also builds the
    // IaC correlation, and caches warm.
    for s in 0..samples + WARM_UP {
        for (kind, kind_rows) in rows.iter_mut().enumerate() {
            let t = Instant::now();
            *kind_rows = match kind {
                0 => client
                    .list_hosts(v1::ListHostsRequest {
                        diverged: true,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .hosts
                    .len(),
                1 => client
                    .list_hosts(v1::ListHostsRequest {
                        diverged: true,
                        severity: "security".into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .hosts
                    .len(),
                2 => client
                    .get_host(v1::GetHostRequest {
                        host: format!("i-{:017x}", (s * 7919) % hosts),
                    })
                    .await?
                    .into_inner()
                    .drift
                    .len(),
                3 => client
                    .list_paths(v1::ListPathsRequest {
                        path: "/etc/ssh/**".into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .paths
                    .len(),
                4 => client
                    .list_paths(v1::ListPathsRequest::default())
                    .await?
                    .into_inner()
                    .paths
                    .len(),
                // `causes --hosts 5`: every change, five host names each.
                _ => client
                    .list_causes(v1::ListCausesRequest {
                        max_hosts: 5,
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .causes
                    .len(),
            };
            if s >= WARM_UP {
                times[kind].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let mut results = serde_json::Map::new();
    for ((name, mut times), rows) in KINDS.into_iter().zip(times).zip(rows) {
        times.sort_by(f64::total_cmp);
        results.insert(
            name.into(),
            serde_json::json!({
                "rows": rows,
                "p50_ms": percentile(&times, 0.5),
                "p99_ms": percentile(&times, 0.99),
            }),
        );
    }
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
