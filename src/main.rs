//! `connector-runtime`: the CLI. The only place for `anyhow` at the top level and process exit codes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use connector_runtime::api::client::{self, ClientCommand};
use connector_runtime::api::export_cli;
use connector_runtime::{app, config, sandbox, spec, telemetry};

/// mimalloc instead of the system allocator: a call allocates a few dozen small, short-lived blocks
/// across the gRPC server, the upstream client and the decoder, and the system allocator's share of
/// the service's CPU under load was about a sixth (BENCHMARKS.md). See `small_pages` for its memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A self-hostable Stripe integration-connector runtime with a gRPC interface modelled on Google
/// Integration Connectors.
#[derive(Debug, Parser)]
#[command(name = "connector-runtime", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the gRPC service. With no configuration it serves the embedded `stripe-sandbox`
    /// connection on 127.0.0.1:50051, backed by the built-in sandbox.
    Serve {
        /// Configuration file (TOML or YAML); environment variables CONNECTOR_RUNTIME__* override it.
        #[arg(long, short, env = "CONNECTOR_RUNTIME_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Allows serving on a non-loopback address without any auth token. Insecure.
        #[arg(long)]
        insecure: bool,
    },
    /// Serves one connection's agent tools over MCP's stdio transport (for agent hosts that
    /// launch MCP servers as subprocesses). The engine runs in this process with the same
    /// configuration as `serve`; logs go to stderr.
    Mcp {
        /// Configuration file (TOML or YAML), as for `serve`.
        #[arg(long, short, env = "CONNECTOR_RUNTIME_CONFIG")]
        config: Option<PathBuf>,
        /// The connection whose tools to serve.
        #[arg(long, default_value = "stripe-sandbox")]
        connection: String,
    },
    /// Validates a configuration file and prints every problem.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Runs the built-in Stripe test-mode sandbox alone, for other tools.
    Sandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:12111")]
        listen: SocketAddr,
        /// Requests per second per key before Stripe's 429 (0 turns the limit off).
        #[arg(long, default_value_t = 25)]
        rate_limit: u32,
        /// Loads the connector spec from this directory instead of the embedded copy.
        #[arg(long)]
        spec_dir: Option<PathBuf>,
    },
    /// Works with connector specs.
    Spec {
        #[command(subcommand)]
        command: SpecCommand,
    },
    /// Calls a running service (a small gRPC client; prints JSON).
    Client {
        /// The service's address.
        #[arg(
            long,
            default_value = "http://127.0.0.1:50051",
            env = "CONNECTOR_RUNTIME_ADDR"
        )]
        addr: String,
        /// Bearer token, when the service requires one.
        #[arg(long, env = "CONNECTOR_RUNTIME_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The connection to use.
        #[arg(long, default_value = "stripe-sandbox")]
        connection: String,
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Exports every entity of a type matching a clause from a running service, as NDJSON or CSV,
    /// with progress; --resume continues an interrupted export.
    Export {
        /// The service's address.
        #[arg(
            long,
            default_value = "http://127.0.0.1:50051",
            env = "CONNECTOR_RUNTIME_ADDR"
        )]
        addr: String,
        /// Bearer token, when the service requires one.
        #[arg(long, env = "CONNECTOR_RUNTIME_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The connection to use.
        #[arg(long, default_value = "stripe-sandbox")]
        connection: String,
        #[command(flatten)]
        args: export_cli::ExportArgs,
    },
}

#[derive(Debug, Subcommand)]
enum SpecCommand {
    /// Generates a connector spec from an OpenAPI description (Stripe's, or any API its overlay describes).
    Generate {
        /// Stripe's OpenAPI description (spec3.json).
        #[arg(long)]
        openapi: PathBuf,
        /// Output directory, e.g. connector-spec/stripe.
        #[arg(long)]
        out: PathBuf,
        /// Hand-written overlay; defaults to OUT/overlay.toml.
        #[arg(long)]
        overlay: Option<PathBuf>,
    },
    /// Loads and validates a connector spec directory.
    Check {
        /// The spec directory.
        dir: PathBuf,
    },
}

/// Logs to stderr; with settings, also exports to an OTLP collector when one is configured.
fn init_logging(settings: Option<&config::Settings>) -> anyhow::Result<telemetry::Telemetry> {
    let log = settings.map(|s| s.log.clone()).unwrap_or_default();
    Ok(telemetry::init(&log, settings.map(|s| &s.telemetry))?)
}

async fn serve(
    settings: Result<config::Settings, config::ConfigError>,
    listen: Option<SocketAddr>,
    insecure: bool,
) -> anyhow::Result<()> {
    let mut settings = match settings {
        Ok(settings) => settings,
        Err(error) => {
            init_logging(None)?;
            return Err(anyhow!("{error}"));
        }
    };
    if let Some(listen) = listen {
        settings.server.listen = listen;
    }
    let _telemetry = init_logging(Some(&settings))?;
    let listener = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| format!("binding {}", settings.server.listen))?;
    let running = app::start(settings, insecure, listener, app::shutdown_signal()).await?;
    running.wait().await.map(|_| ())
}

/// `serve` and `mcp` read their settings before the runtime starts (`server.worker_threads`
/// sizes it); a load error is reported once logging is up.
type Loaded = Option<Result<config::Settings, config::ConfigError>>;

async fn run(cli: Cli, loaded: Loaded) -> anyhow::Result<ExitCode> {
    let settings = || loaded.ok_or_else(|| anyhow!("settings were not loaded"));
    match cli.command {
        Command::Serve {
            listen, insecure, ..
        } => serve(settings()?, listen, insecure).await?,
        Command::Mcp { connection, .. } => mcp(settings()?, connection).await?,
        Command::CheckConfig { file } => return Ok(check_config(&file)),
        Command::Sandbox {
            listen,
            rate_limit,
            spec_dir,
        } => run_sandbox(listen, rate_limit, spec_dir).await?,
        Command::Spec { command } => spec_command(command)?,
        Command::Client {
            addr,
            token,
            connection,
            command,
        } => {
            let output = client::run(&addr, token.as_deref(), &connection, command).await?;
            println!("{output}");
        }
        Command::Export {
            addr,
            token,
            connection,
            args,
        } => {
            let summary = export_cli::run(&addr, token.as_deref(), &connection, args).await?;
            eprintln!("{summary}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `mcp`: the agent tools over stdio. Log lines go to stderr: stdout is the MCP channel.
async fn mcp(
    loaded: Result<config::Settings, config::ConfigError>,
    connection: String,
) -> anyhow::Result<()> {
    let settings = match loaded {
        Ok(settings) => settings,
        Err(error) => {
            init_logging(None)?;
            return Err(anyhow!("{error}"));
        }
    };
    let _telemetry = init_logging(Some(&settings))?;
    app::run_mcp_stdio(settings, connection).await?;
    Ok(())
}

/// `check-config`: every problem of the file, one per line; failure when there is any.
fn check_config(file: &std::path::Path) -> ExitCode {
    let problems = config::check(file);
    if problems.is_empty() {
        println!("{}: OK", file.display());
        return ExitCode::SUCCESS;
    }
    for problem in &problems {
        println!("{problem}");
    }
    eprintln!("{}: {} problem(s)", file.display(), problems.len());
    ExitCode::FAILURE
}

/// `sandbox`: the stateful test-mode backend on its own, until a shutdown signal.
async fn run_sandbox(
    listen: SocketAddr,
    rate_limit: u32,
    spec_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let _logging = init_logging(None)?;
    let spec = match spec_dir {
        Some(dir) => std::sync::Arc::new(spec::load_dir(&dir).map_err(|e| anyhow!("{e}"))?),
        None => spec::stripe_shared().map_err(|e| anyhow!("{e}"))?,
    };
    let config = sandbox::SandboxConfig {
        rate_limit: Some(rate_limit).filter(|r| *r > 0),
        ..Default::default()
    };
    let handle = sandbox::start(spec, listen, config)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    tracing::info!(url = %handle.base_url(), key = sandbox::SANDBOX_API_KEY, "Stripe test-mode sandbox listening (any sk_test_ key works)");
    app::shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}

/// `spec generate` and `spec check`.
fn spec_command(command: SpecCommand) -> anyhow::Result<()> {
    match command {
        SpecCommand::Generate {
            openapi,
            out,
            overlay,
        } => {
            let overlay = overlay.unwrap_or_else(|| out.join("overlay.toml"));
            let generated = spec::generate(&openapi, &overlay).map_err(|e| anyhow!("{e}"))?;
            spec::write_spec(&generated, &out).map_err(|e| anyhow!("{e}"))?;
            println!(
                "wrote {} entity types and {} actions to {}",
                generated.entities.len(),
                generated.actions.len(),
                out.display()
            );
        }
        SpecCommand::Check { dir } => {
            let loaded = spec::load_dir(&dir).map_err(|e| anyhow!("{e}"))?;
            println!(
                "{}: OK ({} entity types, {} actions)",
                dir.display(),
                loaded.entities.len(),
                loaded.actions.len()
            );
        }
    }
    Ok(())
}

/// The tokio runtime: `workers` threads, `0` for one per CPU.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()
}

/// Turns transparent huge pages off for this process. mimalloc maps its memory in large aligned
/// regions; where the kernel's THP mode is `always`, every such region touched is backed by 2 MiB
/// pages, which added about 10 MB to an idle service whose heap is a few megabytes. It has to run
/// before the first allocation (pages already backed by a huge page stay so), hence
/// `.preinit_array`, which the loader runs before any constructor, mimalloc's among them. A failure
/// (a sandbox forbidding `prctl`) costs only memory, so it is ignored.
#[cfg(target_os = "linux")]
extern "C" fn small_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".preinit_array")]
static SMALL_PAGES: extern "C" fn() = small_pages;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded: Loaded = match &cli.command {
        Command::Serve { config, .. } | Command::Mcp { config, .. } => {
            Some(config::load(config.as_deref()))
        }
        _ => None,
    };
    let workers = match &loaded {
        Some(Ok(settings)) => settings.server.worker_threads,
        _ => 0,
    };
    let outcome = runtime(workers)
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli, loaded)));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::runtime;

    #[test]
    fn the_runtime_has_the_configured_worker_threads() {
        assert_eq!(runtime(1).unwrap().metrics().num_workers(), 1);
        assert_eq!(runtime(3).unwrap().metrics().num_workers(), 3);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(runtime(0).unwrap().metrics().num_workers(), cpus);
    }
}
