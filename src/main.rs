//! The `raftlb` binary: parses the command line, sets up logging, and hands
//! over to the library.

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
enum Command {
    /// Run one balancer node.
    Node {
        /// Path of node.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a node with demo backends on loopback, for a first look.
    Demo {
        /// Number of demo backends.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
        backends: u16,
        /// Port of the demo's HTTP frontend on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Port of the admin endpoint (status page) on 127.0.0.1.
        #[arg(long, default_value_t = 7300)]
        admin_port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftlb: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        match cli.command {
            Command::Node { config } => {
                let config = raftlb::config::NodeConfig::load(&config)?;
                let node = raftlb::node::start(&config, None).await?;
                node.run_until_signal().await?;
            }
            Command::Demo {
                backends,
                port,
                admin_port,
            } => {
                raftlb::demo::run(raftlb::demo::DemoOptions {
                    backends: usize::from(backends),
                    port,
                    admin_port,
                })
                .await?;
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("raftlb: {error:#}");
            ExitCode::FAILURE
        }
    }
}
