//! The `pullgate` binary: install the crypto provider, parse arguments, start logging, run.

use anyhow::Context;
use clap::Parser;

use pullgate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("pullgate {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Serve(args) => {
            let config = args.into_config().context("invalid configuration")?;
            pullgate::telemetry::init(config.log_format);
            pullgate::server::run(config, pullgate::server::shutdown_signal()).await
        }
    }
}
