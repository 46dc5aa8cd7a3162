//! The `segzoo` command line.
use anyhow::Context;
use clap::{Parser, Subcommand};
use segzoo::config::{load_config, Override};
use segzoo::logging::{self, LogFormat};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "segzoo",
    version,
    about = "Semantic-segmentation models on libtorch: train, evaluate, serve"
)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or filter (e.g. debug, segzoo=trace); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report segzoo, libtorch, CUDA, cuDNN, NCCL and MPI as this process sees them.
    Env {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the resolved configuration (file + overrides + defaults) as TOML.
    Show {
        /// The TOML config file.
        file: PathBuf,
        /// Override a value: --set section.key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

fn parse_overrides(set: &[String]) -> anyhow::Result<Vec<Override>> {
    set.iter()
        .map(|s| s.parse::<Override>().map_err(anyhow::Error::from))
        .collect()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Env { json } => {
            let report = segzoo::envinfo::EnvReport::collect();
            if json {
                print_out(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                print_out(&format!("{report}\n"))?;
            }
        }
        Command::Config(ConfigCommand::Show { file, set }) => {
            let config = load_config(&file, &parse_overrides(&set)?)?;
            print_out(&toml::to_string(&config).context("serialising the resolved config")?)?;
        }
    }
    Ok(())
}

/// Print to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("writing output: {e}"))
        }
        _ => Ok(()),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
