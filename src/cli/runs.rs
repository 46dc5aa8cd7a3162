//! `segzoo runs summary DIR…`: a table of run folders (see `train/run_summary.rs`).
use super::Output;
use crate::train::run_summary::{summarize_all, table};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Model, steps, best score, last loss, img/s, time and status of run folders.
    Summary(SummaryArgs),
}

#[derive(Args)]
pub struct SummaryArgs {
    /// Run folders (a training's train.output_dir).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// JSON rows instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: RunsCommand) -> anyhow::Result<Output> {
    let RunsCommand::Summary(args) = command;
    let rows = summarize_all(&args.dirs);
    let failed = rows.iter().filter(|r| r.is_err()).count();
    if failed == rows.len() {
        let errors: Vec<String> = rows.into_iter().filter_map(Result::err).collect();
        anyhow::bail!("{}", errors.join("\n"));
    }
    if args.json {
        let ok: Vec<_> = rows.into_iter().filter_map(Result::ok).collect();
        return Output::json(&ok);
    }
    Ok(Output::text(table(&rows)))
}
