//! The `raftlb` binary: parses the command line, sets up logging, and hands
//! over to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tracing_subscriber::EnvFilter;

/// A highly available, clustered L4/L7 load balancer.
#[derive(Parser)]
#[command(name = "raftlb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Certs {
    /// Write a CA, a certificate per node (its addresses as subject
    /// alternative names) and client certificates into a folder; keys are
    /// mode 600. Run again on the same folder, it keeps the CA and the
    /// files there and adds what is missing (a new node's certificate).
    ///
    /// Example: raftlb certs init --out certs --node 1=127.0.0.11 --node 2=127.0.0.12 --node 3=127.0.0.13 --client admin --client grafana:read
    Init {
        /// Folder to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// A node as ID=ADDRESS[,ADDRESS|NAME…], the addresses and host
        /// names it is reached at; repeat for each node.
        #[arg(long = "node", value_name = "ID=ADDRESS")]
        nodes: Vec<raftlb::tls::bootstrap::NodeSpec>,
        /// A client as NAME (role admin) or NAME:read; repeat for each.
        #[arg(long = "client", value_name = "NAME[:read]")]
        clients: Vec<raftlb::tls::bootstrap::ClientSpec>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run one balancer node.
    Node {
        /// Path of node.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the BIRD 2 configuration for a node with `[vip] mode =
    /// "bgp"`: its BGP session to the router (from `[bgp]`), BFD if asked,
    /// and the VIP exported only from the interface raftlb owns.
    ///
    /// Example: raftlb bird-config --config node.toml > /etc/bird/bird.conf
    BirdConfig {
        /// Path of node.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Drive a cluster through its control API.
    Ctl(Box<raftlb::ctl::CtlArgs>),
    /// Certificates for mutual TLS between nodes and clients.
    #[command(subcommand)]
    Certs(Certs),
    /// Run an embedded cluster with demo backends on loopback, for a first look.
    Demo {
        /// Number of balancer nodes, on 127.0.0.11, 127.0.0.12, …
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=7))]
        nodes: u8,
        /// Number of demo backends.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
        backends: u16,
        /// Port of the demo's HTTP frontend on every node.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Failover drill: a few seconds in, kill the VIP holder (SIGKILL)
        /// under client load, report who took over and how long the VIP
        /// was unanswered, then stop.
        #[arg(long)]
        drill: bool,
        /// Rounds of the drill (the killed node is restarted between them).
        #[arg(long, default_value_t = 1, requires = "drill", value_parser = clap::value_parser!(u16).range(1..=100))]
        rounds: u16,
    },
}

/// `node.toml`, checked; `None` once the error is printed.
fn load_node_config(path: &std::path::Path) -> Option<raftlb::config::NodeConfig> {
    raftlb::config::NodeConfig::load(path)
        .map_err(|error| eprintln!("raftlb: {error}"))
        .ok()
}

/// Default log filter. openraft logs every failed RPC to a peer that is
/// down, several times a second, at error level; raftlb logs each change
/// of a peer's reachability and of the leader once instead. rustls warns
/// of every odd ClientHello any client sends (an IP address as SNI, as wrk
/// and scanners send: a line per connection); raftlb logs a failed
/// handshake itself.
const DEFAULT_LOG: &str = "info,openraft=off,sled=warn,h2=warn,tower=warn,hyper=warn,rustls=error";

fn main() -> ExitCode {
    // The process-wide provider, for libraries that build TLS configs of
    // their own (the ACME client); raftlb's own configs name it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match Cli::parse().command {
        Command::Ctl(args) => run_ctl(*args),
        Command::Certs(Certs::Init {
            out,
            nodes,
            clients,
        }) => match raftlb::tls::bootstrap::init(&out, &nodes, &clients) {
            Ok(written) if written.is_empty() => {
                println!("{}: every file was there already", out.display());
                ExitCode::SUCCESS
            }
            Ok(written) => {
                for file in written {
                    println!("wrote {}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("raftlb certs: {error}");
                ExitCode::FAILURE
            }
        },
        Command::BirdConfig { config } => {
            let Some(config) = load_node_config(&config) else {
                return ExitCode::FAILURE;
            };
            let (Some(bgp), Some(vip)) = (&config.bgp, config.vip.address) else {
                eprintln!(
                    "raftlb: bird-config needs [vip] mode = \"bgp\", vip.address and a [bgp] section"
                );
                return ExitCode::FAILURE;
            };
            print!(
                "{}",
                raftlb::vip::bgp::bird::config(bgp, vip, bgp.router_id(config.serve_ip))
            );
            ExitCode::SUCCESS
        }
        Command::Node { config } => {
            let Some(config) = load_node_config(&config) else {
                return ExitCode::FAILURE;
            };
            run_server(config.worker_threads, async move {
                let node = raftlb::node::start(&config, None).await?;
                node.run_until_signal().await?;
                Ok(())
            })
        }
        Command::Demo {
            nodes,
            backends,
            port,
            drill,
            rounds,
        } => run_server(None, async move {
            let options = raftlb::demo::DemoOptions {
                nodes,
                backends: usize::from(backends),
                port,
                drill_rounds: if drill { usize::from(rounds) } else { 0 },
            };
            raftlb::demo::run(options).await?;
            Ok(())
        }),
    }
}

/// Runs a long-lived command (a node or the demo) with logging set up.
fn run_server(
    worker_threads: Option<usize>,
    job: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftlb: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("raftlb: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `raftlb ctl`: quiet (no logging), one line or one document on stdout,
/// errors on stderr, and the exit status of INTERFACE.md.
fn run_ctl(args: raftlb::ctl::CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftlb ctl: cannot start the async runtime: {error}");
            return ExitCode::from(3);
        }
    };
    let outcome = runtime.block_on(raftlb::ctl::run(args));
    let code = outcome.exit_code();
    match outcome {
        // A closed pipe (`raftlb ctl status | head -3`) is not an error.
        raftlb::ctl::Outcome::Done(text) => {
            let _ = writeln!(std::io::stdout(), "{text}");
        }
        raftlb::ctl::Outcome::Refused(text)
        | raftlb::ctl::Outcome::Usage(text)
        | raftlb::ctl::Outcome::Unreachable(text) => eprintln!("raftlb ctl: {text}"),
    }
    ExitCode::from(code)
}
