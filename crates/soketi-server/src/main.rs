//! The `soketi-server` binary: parses the command line and runs the server.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use soketi_server::Config;
use soketi_server::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: it holds an idle connection in less memory (2.8 against
/// 3.0 KiB of RSS with 19k connections), and with its background thread it gives the memory
/// of connections that left back to the system, where glibc keeps it for good.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The version and the commit it was built from, as `--version` prints them:
/// `0.1.0 (abc1234 2026-11-26)`; `build.rs` finds the commit.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SOKETI_BUILD_COMMIT"),
    ")"
);

/// A Pusher Channels protocol 7 server, a drop-in successor to soketi.
#[derive(Parser)]
#[command(version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (the default).
    Start(Options),
    /// Print the effective configuration as JSON, with secrets masked.
    Config(Options),
    /// Ask the operations server's GET /ready and exit 0 if it answers 200, else 1 (for
    /// container health checks, in images without curl).
    Health(HealthOptions),
}

#[derive(Args, Clone)]
struct HealthOptions {
    /// The URL to ask; by default /ready on loopback at the configured operations port
    /// (SOKETI_METRICS_SERVER_PORT).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    timeout: u64,
    #[command(flatten)]
    options: Options,
}

#[derive(Args, Clone, Default)]
struct Options {
    /// A config file: JSON, TOML or YAML, with soketi's option paths.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format: text or json (overrides LOG_FORMAT).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => start(cli.options),
        Some(Command::Start(options)) => start(merge(cli.options, options)),
        Some(Command::Config(options)) => print_config(merge(cli.options, options)),
        Some(Command::Health(health_options)) => health(cli.options, health_options),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line naming what is wrong, rather than a backtrace.
            eprintln!("soketi-server: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: most errors quote their cause in
/// their own message, so that `to_string` alone is complete, and are not followed by it again.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Options given before the subcommand, overridden by those after it.
fn merge(global: Options, local: Options) -> Options {
    Options {
        config: local.config.or(global.config),
        log_format: local.log_format.or(global.log_format),
    }
}

fn load(options: &Options) -> anyhow::Result<Config> {
    let mut config = Config::load(options.config.as_deref())?;
    if let Some(format) = &options.log_format {
        config.log_format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => anyhow::bail!("--log-format is {other:?}; use text or json"),
        };
    }
    Ok(config)
}

fn print_config(options: Options) -> anyhow::Result<()> {
    let config = load(&options)?;
    let text = serde_json::to_string_pretty(&config.masked_json())?;
    writeln!(std::io::stdout(), "{text}").context("could not write to stdout")?;
    Ok(())
}

fn health(global: Options, health: HealthOptions) -> anyhow::Result<()> {
    let url = match health.url {
        Some(url) => url,
        None => soketi_server::probe::ready_url(&load(&merge(global, health.options))?),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the tokio runtime")?;
    runtime.block_on(soketi_server::probe::ready(
        &url,
        Duration::from_secs(health.timeout),
    ))?;
    writeln!(std::io::stdout(), "{url}: ready").context("could not write to stdout")?;
    Ok(())
}

fn init_logs(config: &Config) {
    let default_level = if config.debug { "debug" } else { "info" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn start(options: Options) -> anyhow::Result<()> {
    // The background thread purges the pages that freed memory leaves, a few seconds after.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!(
            "warning: jemalloc's background thread is off ({e}); memory that connections free stays with the process"
        );
    }
    let config = load(&options)?;
    config.check_runnable()?;
    init_logs(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the tokio runtime")?;
    runtime.block_on(async {
        let server = soketi_server::start(config).await?;
        tracing::info!(
            "soketi-server {} listening on {}, operations on {}",
            VERSION,
            server.local_addr(),
            server.metrics_addr()
        );
        shutdown_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
