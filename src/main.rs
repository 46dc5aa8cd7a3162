//! The `segzoo` command line: the top-level parser and the dispatch. Each command's
//! arguments and logic live in `segzoo::cli`.
use clap::{Parser, Subcommand};
use segzoo::cli::{bench, data, dist_check, eval, infer, info, runs, train, weights, ExitWith, Output};
use segzoo::logging::{self, LogFormat};
use segzoo::train::preempt::Interrupted;

#[derive(Parser)]
#[command(name = "segzoo", version, about = "Semantic-segmentation models on libtorch: train, evaluate, serve")]
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
    Env(info::EnvArgs),
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(info::ConfigCommand),
    /// Parameter count and state-dict tensors of a model (preset name or config file).
    ModelInfo(info::ModelInfoArgs),
    /// List the model presets.
    Models,
    /// Train a model as a config describes (one device; docs/distributed.md for several).
    Train(train::TrainArgs),
    /// Predict every input image and write one PNG each.
    Infer(infer::InferArgs),
    /// Evaluate a checkpoint on the config's val list (scales, flip and sliding window from [eval] or the flags).
    Eval(eval::EvalArgs),
    /// Evaluate prediction PNGs made elsewhere against a list's labels.
    EvalPreds(eval::EvalPredsArgs),
    /// Write a checkpoint's weights alone: official names (safetensors), the MindSpore
    /// ModelZoo's (ckpt), or the deploy form (ONNX, TorchScript).
    Export(weights::ExportArgs),
    /// Generate a synthetic dataset in a real layout.
    #[command(subcommand)]
    Synth(data::SynthCommand),
    /// Write the list files of a dataset in its standard layout, or of a custom one
    /// (images/ and masks/ paired by name, a val share drawn at random).
    MakeLists(data::MakeListsArgs),
    /// Dataset checks: `data check --config C` before any training.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Check this job's collectives (run it under mpirun or segzoo-launch): all-reduce and
    /// broadcast of every tensor kind with known values, a barrier, then all-reduce bandwidth.
    DistCheck(dist_check::DistCheckArgs),
    /// Convert weights: .pth or ModelZoo .ckpt to safetensors (official names), or any to a
    /// ModelZoo .ckpt.
    Convert(weights::ConvertArgs),
    /// Look at run folders: `runs summary DIR…`.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Run one eval-mode forward pass on the tensor `input` of a safetensors file
    /// and write every head's output (`output_logits`, `output_aux`, …).
    Forward(weights::ForwardArgs),
}

fn run(command: Command) -> anyhow::Result<Output> {
    match command {
        Command::Env(args) => info::env(args),
        Command::Config(cmd) => info::config(cmd),
        Command::ModelInfo(args) => info::model_info(args),
        Command::Models => info::models(),
        Command::Train(args) => train::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Eval(args) => eval::eval(args),
        Command::EvalPreds(args) => eval::eval_preds(args),
        Command::Export(args) => weights::export(args),
        Command::Synth(cmd) => data::synth(cmd),
        Command::MakeLists(args) => data::make_lists(args),
        Command::Data(cmd) => data::data(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::DistCheck(args) => dist_check::run(args),
        Command::Convert(args) => weights::convert(args),
        Command::Forward(args) => weights::forward(args),
        Command::Runs(command) => runs::run(command),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    // Every log line of a multi-process job carries `rank k/N`, and so does its error.
    let mut who = String::new();
    if let Ok(w) = segzoo::distributed::world::from_process_env() {
        if w.size > 1 {
            logging::set_rank(w.rank, w.size);
            who = format!("rank {}/{}: ", w.rank, w.size);
        }
    }
    let result = run(cli.command).and_then(|out| out.print().map(|()| out.exit_code()));
    segzoo::distributed::watchdog::finish();
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) if e.downcast_ref::<ExitWith>().is_some() => {
            let code = e.downcast_ref::<ExitWith>().map_or(1, |x| x.code);
            eprintln!("error: {who}{e:#}");
            std::process::ExitCode::from(code)
        }
        Err(e) => match e.downcast_ref::<Interrupted>() {
            // Preempted: the checkpoint is written; the exit code says which signal ended it.
            Some(stop) => {
                eprintln!("{who}{stop}");
                std::process::ExitCode::from(stop.exit_code())
            }
            None => {
                eprintln!("error: {who}{e:#}");
                segzoo::distributed::watchdog::record_failure("error", &e, 1);
                std::process::ExitCode::FAILURE
            }
        },
    }
}
