//! `soketi-bench`: loads a Pusher Channels protocol server and prints a JSON summary.
//!
//! The command line becomes a [`soketi_bench::Plan`]; the library does the rest. The generator
//! runs on one tokio thread by default, so that `taskset` can give it one core of its own. It
//! refuses any address off loopback: load goes only to servers on this machine.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use soketi_bench::{
    App, Attack, ChannelKind, Minute, Mode, Pacing, Plan, PublishPlan, SoakPlan, Sources, StepPlan,
};

/// Loads a Pusher Channels protocol server: WebSocket connections, subscriptions, publishes
/// through the HTTP API; prints connect times, deliveries per second, latency percentiles,
/// losses and the server's CPU and memory as JSON.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// WebSocket servers (host:port, loopback only); connections are spread over them.
    #[arg(
        long = "server",
        value_delimiter = ',',
        default_value = "127.0.0.1:6001"
    )]
    servers: Vec<SocketAddr>,
    /// The HTTP API that publishes go to; the first server by default.
    #[arg(long)]
    api: Option<SocketAddr>,
    #[arg(long, default_value = "app-id")]
    app_id: String,
    #[arg(long, default_value = "app-key")]
    key: String,
    #[arg(long, default_value = "app-secret")]
    secret: String,
    /// WebSocket connections to open and subscribe.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Channels to spread them over.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    #[arg(long, value_enum, default_value_t = Kind::Public)]
    kind: Kind,
    /// Handshakes (connect, upgrade, subscribe) in flight at once.
    #[arg(long, default_value_t = 200)]
    handshakes: usize,
    /// The first source address of connections; each next address takes `--per-source` more.
    /// `none` lets the kernel choose.
    #[arg(long, default_value = "127.0.0.2")]
    source_first: String,
    #[arg(long, default_value_t = 5000)]
    per_source: usize,
    /// Seconds that opening and subscribing every connection may take.
    #[arg(long, default_value_t = 60)]
    connect_deadline_secs: u64,
    /// Server pids to read CPU time and memory of from /proc.
    #[arg(long = "server-pid", value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Also write the JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw no progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Worker threads; 1 runs everything on the calling thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Attack beside the load with this many slowloris sockets (a request head dripped a header
    /// line a second), reconnecting when cut off.
    #[arg(long, default_value_t = 0)]
    attack_slowloris: usize,
    /// Attack beside the load with this many unsigned uploads sent at 160 KiB/s each.
    #[arg(long, default_value_t = 0)]
    attack_uploads: usize,
    /// Megabytes each attacking upload announces.
    #[arg(long, default_value_t = 50)]
    attack_upload_mb: u64,
    /// Once the connections are set up, open one live debug console stream on the app (on the
    /// first server) and read it to the end of the measured phase (in publish mode, before the
    /// connections close), counting its lines: what an open console costs the server.
    #[arg(long)]
    console: bool,
    #[command(subcommand)]
    mode: ModeArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Public,
    Private,
    Presence,
    /// Of every ten channels, seven public, two private, one presence.
    Mixed,
}

#[derive(Debug, Subcommand)]
enum ModeArgs {
    /// Publish at each rate in turn and time every delivery.
    Publish {
        /// Publishes per second of each step.
        #[arg(long, value_delimiter = ',', default_value = "100")]
        rates: Vec<u32>,
        /// Seconds each step publishes.
        #[arg(long, default_value_t = 5.0)]
        step_secs: f64,
        /// Milliseconds after each step in which its deliveries still count as in time (less
        /// once every delivery owed has arrived).
        #[arg(long, default_value_t = 1000)]
        drain_ms: u64,
        /// Stop at the first step that falls behind.
        #[arg(long)]
        stop_when_behind: bool,
        /// Concurrent HTTP connections that publish.
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Bytes of each event's data.
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    /// Publishers that each send one request at a time, at a rate of their own: a step for
    /// every number of publishers and rate per publisher, in that order.
    Sequential {
        /// Publishers of each step, each on its own keep-alive HTTP connection.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        publishers: Vec<usize>,
        /// Publishes per second of each publisher.
        #[arg(long, value_delimiter = ',', default_value = "100,400")]
        rates: Vec<u32>,
        /// Seconds each step publishes.
        #[arg(long, default_value_t = 10.0)]
        step_secs: f64,
        /// Milliseconds after each step in which its deliveries still count as in time (less
        /// once every delivery owed has arrived).
        #[arg(long, default_value_t = 2000)]
        drain_ms: u64,
        /// Bytes of each event's data.
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    /// Open the connections, then join them all at once and count the
    /// `pusher_internal:subscription_count` events each hears.
    SubscriptionCount {
        /// Seconds after the last join that the connections may wait for their channel's final
        /// count.
        #[arg(long, default_value_t = 5.0)]
        settle_secs: f64,
    },
    /// Hold the connections idle, then read the servers' memory.
    Idle {
        #[arg(long, default_value_t = 5.0)]
        hold_secs: f64,
    },
    /// Publish as fast as the HTTP connections allow, to a channel without subscribers.
    Http {
        #[arg(long, default_value_t = 16)]
        http_connections: usize,
        #[arg(long, default_value_t = 10.0)]
        duration_secs: f64,
    },
    /// Leave and join one presence channel in a loop with the first `--churners` connections.
    Churn {
        #[arg(long, default_value_t = 100)]
        churners: usize,
        #[arg(long, default_value_t = 10.0)]
        duration_secs: f64,
    },
    /// Every kind of traffic at once over mixed channels for many minutes, with a row of
    /// figures per minute; the first `--channels` connections are witnesses that never
    /// reconnect.
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        /// Seconds of a minute (shorter for a trial).
        #[arg(long, default_value_t = 60.0)]
        minute_secs: f64,
        #[arg(long, default_value_t = 200)]
        publish_rate: u32,
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Percent of the connections that close and connect again every second.
        #[arg(long, default_value_t = 1.0)]
        reconnect_percent: f64,
        #[arg(long, default_value_t = 50.0)]
        client_events_per_sec: f64,
        #[arg(long, default_value_t = 3.0)]
        api_reads_per_sec: f64,
        /// Seconds after every client left before the descriptors are read again.
        #[arg(long, default_value_t = 5.0)]
        settle_secs: f64,
        /// Also write each minute's row here as a JSON line, as soon as it is closed.
        #[arg(long)]
        rows: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let json_path = args.json.clone();
    let threads = args.threads;
    let rows = match &args.mode {
        ModeArgs::Soak { rows, .. } => Some(rows.clone()),
        _ => None,
    };
    let mut plan = plan(args)?;
    // A soak's rows go to stderr (and a file) as each minute closes.
    let row_writer = match (&mut plan.mode, rows) {
        (Mode::Soak(soak), Some(path)) => {
            let (sender, receiver) = std::sync::mpsc::channel();
            soak.rows = Some(sender);
            Some(std::thread::spawn(move || write_rows(&receiver, path)))
        }
        _ => None,
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let outcome = runtime.block_on(soketi_bench::run(plan));
    if let Some(writer) = row_writer {
        // The run dropped its sender, so the writer ends once it wrote the last row.
        let _ = writer.join();
    }
    let report = match outcome {
        Ok(report) => report,
        Err(err) => {
            // The caller of a scripted run reads why from the summary file.
            if let Some(path) = &json_path {
                let summary = serde_json::json!({ "error": err.to_string() });
                let _ = std::fs::write(path, summary.to_string());
            }
            return Err(err.into());
        }
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = json_path {
        std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}")?;
    Ok(())
}

/// Writes each row to stderr as one line, and as a JSON line to `path` when given.
fn write_rows(rows: &std::sync::mpsc::Receiver<Minute>, path: Option<PathBuf>) {
    let mut file = path.and_then(|path| std::fs::File::create(path).ok());
    for row in rows {
        eprintln!(
            "soak: minute {:>3}  RSS {:>8.1} MiB {:?}  fds {:?}  p50 {:.2} ms  p99 {:.2} ms  \
             deliveries {}  lost {}  dup {}  live {}  reconnects {}  client events {}/{}  \
             API reads {} ({} failed)  errors {}  server CPU {:.0} %  generator CPU {:.0} %",
            row.minute,
            row.rss_kib as f64 / 1024.0,
            row.rss_kib_per_node,
            row.fds_per_node,
            row.latency.p50,
            row.latency.p99,
            row.deliveries,
            row.lost,
            row.duplicated,
            row.connections,
            row.reconnects,
            row.client_events_sent,
            row.client_events_received,
            row.api_reads,
            row.api_read_failed,
            row.errors,
            row.server_cpu_percent,
            row.generator_cpu_percent,
        );
        if let (Some(file), Ok(line)) = (&mut file, serde_json::to_string(&row)) {
            let _ = writeln!(file, "{line}");
            let _ = file.flush();
        }
    }
}

fn plan(args: Args) -> Result<Plan> {
    let api = args
        .api
        .or_else(|| args.servers.first().copied())
        .context("no server given")?;
    let source_first = match args.source_first.as_str() {
        "none" => None,
        text => Some(
            text.parse::<Ipv4Addr>()
                .with_context(|| format!("--source-first {text}"))?,
        ),
    };
    let addresses = args
        .servers
        .iter()
        .map(SocketAddr::ip)
        .chain([api.ip()])
        .chain(source_first.map(IpAddr::V4));
    for address in addresses {
        if !address.is_loopback() {
            bail!("{address} is not a loopback address; this generator loads local servers only");
        }
    }
    let seconds = |secs: f64| Duration::from_secs_f64(secs.clamp(0.0, 600.0));
    let (mode, kind, connections, channels) = match args.mode {
        ModeArgs::Publish {
            rates,
            step_secs,
            drain_ms,
            stop_when_behind,
            publishers,
            payload,
        } => (
            Mode::Publish(PublishPlan {
                steps: rates
                    .into_iter()
                    .map(|rate| StepPlan {
                        rate,
                        publishers,
                        pacing: Pacing::Shared,
                    })
                    .collect(),
                step: seconds(step_secs),
                drain: Duration::from_millis(drain_ms),
                stop_when_behind,
                payload,
                publisher_thread: false,
            }),
            args.kind,
            args.connections,
            args.channels,
        ),
        ModeArgs::Sequential {
            publishers,
            rates,
            step_secs,
            drain_ms,
            payload,
        } => (
            Mode::Publish(PublishPlan {
                steps: publishers
                    .iter()
                    .flat_map(|&publishers| {
                        rates.iter().map(move |&rate| StepPlan {
                            rate: rate.saturating_mul(publishers as u32),
                            publishers,
                            pacing: Pacing::PerPublisher,
                        })
                    })
                    .collect(),
                step: seconds(step_secs),
                drain: Duration::from_millis(drain_ms),
                // A step whose deliveries fall behind leaves a backlog to the next.
                stop_when_behind: true,
                payload,
                publisher_thread: true,
            }),
            args.kind,
            args.connections,
            args.channels,
        ),
        ModeArgs::SubscriptionCount { settle_secs } => (
            Mode::SubscriptionCount {
                settle: seconds(settle_secs),
            },
            args.kind,
            args.connections,
            args.channels,
        ),
        ModeArgs::Idle { hold_secs } => (
            Mode::Idle {
                hold: seconds(hold_secs),
            },
            args.kind,
            args.connections,
            args.channels,
        ),
        ModeArgs::Http {
            http_connections,
            duration_secs,
        } => (
            Mode::Http {
                connections: http_connections,
                duration: seconds(duration_secs),
            },
            args.kind,
            0,
            args.channels,
        ),
        ModeArgs::Churn {
            churners,
            duration_secs,
        } => (
            Mode::Churn {
                churners,
                duration: seconds(duration_secs),
            },
            Kind::Presence,
            args.connections,
            1,
        ),
        ModeArgs::Soak {
            minutes,
            minute_secs,
            publish_rate,
            publishers,
            payload,
            reconnect_percent,
            client_events_per_sec,
            api_reads_per_sec,
            settle_secs,
            rows: _,
        } => (
            Mode::Soak(SoakPlan {
                minutes,
                minute: seconds(minute_secs),
                publish_rate,
                publishers,
                payload,
                reconnect_percent: reconnect_percent.clamp(0.0, 100.0),
                client_events_per_sec: client_events_per_sec.max(0.0),
                api_reads_per_sec: api_reads_per_sec.max(0.0),
                settle: seconds(settle_secs),
                rows: None,
            }),
            Kind::Mixed,
            args.connections,
            args.channels,
        ),
    };
    Ok(Plan {
        servers: args.servers,
        api,
        app: App {
            id: args.app_id,
            key: args.key,
            secret: args.secret,
        },
        connections,
        channels,
        kind: match kind {
            Kind::Public => ChannelKind::Public,
            Kind::Private => ChannelKind::Private,
            Kind::Presence => ChannelKind::Presence,
            Kind::Mixed => ChannelKind::Mixed,
        },
        handshakes: args.handshakes,
        sources: Sources {
            first: source_first,
            per_address: args.per_source,
        },
        connect_deadline: Duration::from_secs(args.connect_deadline_secs),
        server_pids: args.server_pids,
        progress: !args.no_progress,
        mode,
        attack: (args.attack_slowloris > 0 || args.attack_uploads > 0).then_some(Attack {
            target: api,
            slowloris: args.attack_slowloris,
            uploads: args.attack_uploads,
            upload_bytes: args.attack_upload_mb * 1024 * 1024,
        }),
        console: args.console,
    })
}
