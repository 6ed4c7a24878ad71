//! The `pullgate` binary: install the crypto provider, parse arguments, start logging, run.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use pullgate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("pullgate {}", pullgate::cli::VERSION);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let config = args.into_config().context("invalid configuration")?;
            pullgate::telemetry::init(config.log_format);
            pullgate::server::run(config, pullgate::server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(args) => {
            let config = match args.into_config() {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("pullgate audit: {error}");
                    return Ok(pullgate::check::Exit::Error.into());
                }
            };
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            let io = pullgate::audit::Io {
                stdout: &mut stdout,
                stderr: &mut std::io::stderr(),
            };
            Ok(pullgate::audit::run(config, io).await.into())
        }
        Command::Check(args) => {
            let config = match args.into_config() {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("pullgate check: {error}");
                    return Ok(pullgate::check::Exit::Error.into());
                }
            };
            // The report is written in one go: buffer it rather than flush every line.
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            let io = pullgate::check::Io {
                stdin: &mut std::io::stdin(),
                stdout: &mut stdout,
                stderr: &mut std::io::stderr(),
            };
            Ok(pullgate::check::run(config, io).await.into())
        }
    }
}
