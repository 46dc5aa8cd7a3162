//! `segzoo-launch`: reads an HCCL-style rank table and runs one supervised worker per
//! device of this server; with several servers, the launchers form a group led by the one
//! holding rank 0. The command line, and the one place errors become exit codes.
use clap::{Args, Parser, Subcommand};
use segzoo_launch::auth::JobKey;
use segzoo_launch::error::Error;
use segzoo_launch::job::{self, Role};
use segzoo_launch::worker::Console;
use segzoo_launch::{plan, rank_table, supervise};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "segzoo-launch",
    version,
    about = "Run one worker per device of this server from an HCCL-style rank table",
    override_usage = "segzoo-launch --rank-table FILE [OPTIONS] -- <WORKER COMMAND>...\n       segzoo-launch check|gen-table …",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    launch: Launch,
}

#[derive(Args)]
struct Launch {
    /// The rank table (version 1.0 or the older group_list form).
    #[arg(long, required = true)]
    rank_table: Option<PathBuf>,
    /// This server's id in the table (default: a local address or the host name).
    #[arg(long)]
    server_id: Option<String>,
    /// Where `rank_<k>.log` files go.
    #[arg(long, default_value = "logs")]
    log_dir: PathBuf,
    /// Port of the rendezvous rank 0 hosts (the workers' MASTER_PORT; MASTER_ADDR is rank
    /// 0's server id).
    #[arg(long, default_value_t = 29500)]
    master_port: u16,
    /// Restart every server's group this many times after a worker's failure (the worker
    /// command should resume, e.g. `segzoo train … --resume auto`). The same on every server.
    #[arg(long, default_value_t = 0)]
    max_restarts: u32,
    /// With several servers: the TCP port the launcher of rank 0's server listens on for
    /// the other launchers [default: --master-port + 1].
    #[arg(long)]
    group_port: Option<u16>,
    /// With several servers, on the others: reach the group leader at HOST:PORT instead
    /// of <rank 0's server_id>:<group port> (when the table's ids are not reachable
    /// addresses, e.g. in tests).
    #[arg(long, value_name = "HOST:PORT")]
    group_addr: Option<String>,
    /// Seconds to wait for every server to join (the leader), or for the leader to be
    /// reachable (the others).
    #[arg(long, default_value_t = 300.0)]
    join_timeout: f64,
    /// Seconds without any message (heartbeats are sent every second) after which a
    /// server's launcher counts as lost.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_timeout: f64,
    /// With several servers: go on after losing servers while at least this many remain
    /// (a new generation with the servers present; give the workers `--resume auto`, and
    /// `train.global_batch` to keep the trajectory) [default: every server: a loss ends the job].
    #[arg(long, value_name = "K")]
    min_servers: Option<usize>,
    /// Seconds to wait for lost servers to come back before going on without them.
    #[arg(long, default_value_t = 60.0)]
    rejoin_timeout: f64,
    /// A file whose bytes are the job key every launcher of the job holds (also
    /// SEGZOO_JOB_KEY) [default: derived from the rank table].
    #[arg(long, value_name = "FILE")]
    job_key_file: Option<PathBuf>,
    /// Which workers' output reaches the console, prefixed `[rank k]`.
    #[arg(long, value_enum, default_value = "all")]
    console: Console,
    /// Seconds between SIGTERM and SIGKILL when stopping workers.
    #[arg(long, default_value_t = 10.0)]
    grace_period: f64,
    /// The worker command, after `--`.
    #[arg(last = true, required = true, value_name = "WORKER COMMAND")]
    command: Vec<String>,
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
        /// Port of the rendezvous rank 0 hosts (the workers' MASTER_PORT).
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
        device_ip_base: Option<Ipv4Addr>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { rank_table, server_id, master_port }) => check(&rank_table, server_id, master_port),
        Some(Command::GenTable { server_id, devices, device_ip_base, out }) => {
            gen_table(&server_id, &devices, device_ip_base, out)
        }
        None => launch(cli.launch),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("segzoo-launch: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Start and supervise this server's workers, with the other servers' launchers when
/// there are several; the exit code is the job's.
fn launch(args: Launch) -> Result<u8, Error> {
    let mut opts = plan_launch(args)?;
    let log_dir = &opts.local.log_dir;
    std::fs::create_dir_all(log_dir).map_err(|source| Error::LogDir { path: log_dir.clone(), source })?;
    // Workers are told an absolute path: they may change directory.
    opts.local.log_dir_abs = std::path::absolute(log_dir).map_err(Error::io(log_dir.display().to_string()))?;
    // One thread: the workers' parent-death signal follows the thread that spawned them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("cannot start the runtime"))?;
    let finished = runtime.block_on(job::run(&opts))?;
    eprint!("{}", finished.text);
    Ok(finished.code)
}

/// Seconds from the command line: finite, and at least `min`.
fn seconds(flag: &str, value: f64, min: f64, what: &str) -> Result<std::time::Duration, Error> {
    if value.is_finite() && value >= min {
        return Ok(std::time::Duration::from_secs_f64(value));
    }
    Err(Error::Argument(format!("--{flag} {value}: must be {what}")))
}

/// Check the table and the arguments and plan the workers and this launcher's role. Every
/// error of bad input (exit code 2) is found here, before anything is created or started.
fn plan_launch(args: Launch) -> Result<job::Options, Error> {
    let table_file = args.rank_table.clone().ok_or_else(|| Error::Argument("--rank-table is required".into()))?;
    let table = rank_table::RankTable::load(&table_file)?;
    let index = plan::find_server(&table, args.server_id.as_deref(), &plan::local_identities())?;
    let grace = seconds("grace-period", args.grace_period, 0.0, "a non-negative number of seconds")?;
    let join_timeout = seconds("join-timeout", args.join_timeout, 0.0, "a non-negative number of seconds")?;
    let heartbeat_timeout =
        seconds("heartbeat-timeout", args.heartbeat_timeout, 2.0, "at least 2 seconds (heartbeats come every second)")?;
    if args.command.is_empty() {
        return Err(Error::Argument("no worker command: put it after `--`".into()));
    }
    let rejoin_timeout = seconds("rejoin-timeout", args.rejoin_timeout, 0.0, "a non-negative number of seconds")?;
    let servers = table.servers.len();
    let min_servers = match args.min_servers {
        None => servers,
        Some(k) if (1..=servers).contains(&k) => k,
        Some(k) => {
            return Err(Error::Argument(format!(
                "--min-servers {k}: must be between 1 and {servers}, the table's servers"
            )))
        }
    };
    let key = job_key(&table_file, args.job_key_file.as_deref(), servers > 1)?;
    let role = role(&table, index, &args)?;
    // Workers are handed an absolute path: they may change directory.
    let table_abs = std::path::absolute(&table_file).map_err(Error::io(table_file.display().to_string()))?;
    let workers = plan::workers(&table, index, &table_abs, args.master_port)?;
    let server = &table.servers[index];
    eprintln!(
        "segzoo-launch: server {} ({} of {}), ranks {}, world size {}; logs in {}",
        server.server_id,
        index + 1,
        table.servers.len(),
        workers.iter().map(|w| w.rank.to_string()).collect::<Vec<_>>().join(","),
        table.world_size(),
        args.log_dir.display()
    );
    let local = supervise::Options {
        table: table.clone(),
        index,
        table_file: table_abs,
        master_port: args.master_port,
        command: args.command,
        // Made absolute once the directory exists.
        log_dir_abs: args.log_dir.clone(),
        log_dir: args.log_dir,
        console: args.console,
        max_restarts: args.max_restarts,
        grace,
        server_id: server.server_id.clone(),
        multi: table.servers.len() > 1,
    };
    Ok(job::Options {
        local,
        role,
        ids: table.servers.iter().map(|s| s.server_id.clone()).collect(),
        index,
        world_size: table.world_size(),
        join_timeout,
        heartbeat_timeout,
        min_servers,
        rejoin_timeout,
        key,
    })
}

/// The job key: `--job-key-file`, else `SEGZOO_JOB_KEY`, else the rank table's digest (said
/// once, for a table of several servers, with what it does not protect against).
fn job_key(table_file: &Path, file: Option<&Path>, multi: bool) -> Result<JobKey, Error> {
    if let Some(path) = file {
        let bytes = std::fs::read(path).map_err(Error::io(format!("--job-key-file {}", path.display())))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Argument(format!("--job-key-file {}: the file is empty", path.display())));
        }
        return Ok(JobKey::new(&bytes));
    }
    if let Some(key) = std::env::var_os("SEGZOO_JOB_KEY").filter(|k| !k.is_empty()) {
        return Ok(JobKey::new(key.as_encoded_bytes()));
    }
    let bytes = std::fs::read(table_file).map_err(Error::io(table_file.display().to_string()))?;
    if multi {
        eprintln!(
            "segzoo-launch: no job key given (SEGZOO_JOB_KEY or --job-key-file): the launchers prove the rank \
             table's digest instead, which keeps out stray connections and other jobs but not anyone who can \
             read the table"
        );
    }
    Ok(JobKey::from_table(&bytes))
}

/// Alone, the leader (this server holds rank 0), or a follower, and where the leader is.
fn role(table: &rank_table::RankTable, index: usize, args: &Launch) -> Result<Role, Error> {
    if table.servers.len() == 1 {
        return Ok(Role::Single);
    }
    let port = match args.group_port {
        Some(p) => p,
        None => args.master_port.checked_add(1).ok_or_else(|| {
            Error::Argument(format!(
                "--master-port {}: no port after it for the group; pass --group-port",
                args.master_port
            ))
        })?,
    };
    if port == args.master_port {
        // On rank 0's server both would listen: the rendezvous could not.
        return Err(Error::Argument(format!("--group-port {port}: the same as --master-port; pick another")));
    }
    let leader = plan::rank0_server(table)?;
    if leader == index {
        return Ok(Role::Leader { port });
    }
    let addr = match &args.group_addr {
        Some(addr) => addr.clone(),
        // An IPv6 address needs brackets before its port.
        None => match &table.servers[leader].server_id {
            id if id.contains(':') => format!("[{id}]:{port}"),
            id => format!("{id}:{port}"),
        },
    };
    Ok(Role::Follower { addr })
}

/// `check`: validate the table and print every local worker's environment.
fn check(rank_table: &Path, server_id: Option<String>, master_port: u16) -> Result<u8, Error> {
    let table = rank_table::RankTable::load(rank_table)?;
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
    for w in plan::workers(&table, index, rank_table, master_port)? {
        let env: Vec<String> = w.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text += &format!("[rank {}] {}\n", w.rank, env.join(" "));
    }
    print_out(&text)
}

/// `gen-table`: write a version-1.0 table for one server to `out` or standard output.
fn gen_table(server_id: &str, devices: &str, ip_base: Option<Ipv4Addr>, out: Option<PathBuf>) -> Result<u8, Error> {
    let devices = rank_table::parse_device_list(devices).map_err(Error::Argument)?;
    let json = rank_table::generate(server_id, &devices, ip_base);
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Internal(e.to_string()))? + "\n";
    match out {
        Some(path) => std::fs::write(&path, text).map(|()| 0).map_err(Error::io(path.display().to_string())),
        None => print_out(&text),
    }
}

/// Print to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
fn print_out(text: &str) -> Result<u8, Error> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("writing output")(e)),
        _ => Ok(0),
    }
}
