//! `segzoo-launch`: rank tables for data-parallel segzoo jobs.
use clap::{Parser, Subcommand};
use segzoo_launch::{plan, rank_table};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "segzoo-launch", version, about = "HCCL-style rank tables for segzoo workers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a rank table and print the environment each local worker gets.
    Check {
        #[arg(long)]
        rank_table: PathBuf,
        /// This server's id in the table (default: a local address or the host name).
        #[arg(long)]
        server_id: Option<String>,
        /// Port of rank 0's NCCL bootstrap (NCCL_COMM_ID=<first server>:<port>).
        #[arg(long, default_value_t = 29500)]
        master_port: u16,
    },
    /// Write a version-1.0 rank table for one server.
    GenTable {
        #[arg(long)]
        server_id: String,
        /// Devices, e.g. 0-7 or 0,1,4-5.
        #[arg(long, default_value = "0-7")]
        devices: String,
        /// First device IP; device k gets base + k.
        #[arg(long)]
        device_ip_base: Option<std::net::Ipv4Addr>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("segzoo-launch: {msg}");
            // 2: the input (table, arguments) is at fault, as with a usage error.
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Check { rank_table, server_id, master_port } => {
            let table = rank_table::RankTable::load(&rank_table).map_err(|e| e.to_string())?;
            let index = plan::find_server(&table, server_id.as_deref(), &plan::local_identities())?;
            let server = &table.servers[index];
            let mut text = format!(
                "{}: {} server(s), {} rank(s); this is server {} with {} device(s)\n",
                rank_table.display(),
                table.servers.len(),
                table.world_size(),
                server.server_id,
                server.devices.len()
            );
            for w in plan::workers(&table, index, &rank_table, master_port) {
                let env: Vec<String> = w.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                text += &format!("[rank {}] {}\n", w.rank, env.join(" "));
            }
            print_out(&text)
        }
        Command::GenTable { server_id, devices, device_ip_base, out } => {
            let devices = rank_table::parse_device_list(&devices).map_err(|e| format!("--devices: {e}"))?;
            let json = rank_table::generate(&server_id, &devices, device_ip_base);
            let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n";
            match out {
                Some(path) => std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display())),
                None => print_out(&text),
            }
        }
    }
}

/// Print to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
fn print_out(text: &str) -> Result<(), String> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing output: {e}")),
        _ => Ok(()),
    }
}
