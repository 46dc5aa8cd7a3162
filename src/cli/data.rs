//! Dataset commands: `synth` (synthetic data in real layouts) and `make-lists` (list
//! files of a dataset's standard layout, optionally checked).
use super::{cores, parse_size, Output};
use crate::config::DatasetKind;
use crate::data::make_lists::{self, Written};
use crate::data::synth;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum SynthCommand {
    /// Procedural street scenes with Cityscapes file names, label ids and lists.
    Cityscapes {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 20)]
        train: usize,
        #[arg(long, default_value_t = 5)]
        val: usize,
        /// Image size WxH.
        #[arg(long, default_value = "2048x1024", value_parser = parse_size)]
        size: (usize, usize),
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// A small LIP-layout fixture (n train + n val).
    Lip {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 8)]
        n: usize,
        #[arg(long, default_value = "96x128", value_parser = parse_size)]
        size: (usize, usize),
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A small VOC 2012 + SBD fixture (n train + n val, SBD .mat labels).
    Voc {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 8)]
        n: usize,
        #[arg(long, default_value = "120x90", value_parser = parse_size)]
        size: (usize, usize),
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A small ImageNet-style class-folder fixture.
    Imagenet {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4)]
        classes: usize,
        #[arg(long, default_value_t = 4)]
        per_class: usize,
        #[arg(long, default_value_t = 64)]
        size: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn written(list: &[Written]) -> Output {
    let mut out = Output::none();
    for w in list {
        out.line(format!("wrote {} ({} entries)", w.path.display(), w.entries));
    }
    out
}

pub fn synth(cmd: SynthCommand) -> anyhow::Result<Output> {
    let list = match cmd {
        SynthCommand::Cityscapes { out, train, val, size, seed, threads } => {
            synth::cityscapes(&out, train, val, size.0, size.1, seed, threads.unwrap_or_else(cores))?
        }
        SynthCommand::Lip { out, n, size, seed } => synth::lip(&out, n, size.0, size.1, seed)?,
        SynthCommand::Voc { out, n, size, seed } => synth::voc(&out, n, size.0, size.1, seed)?,
        SynthCommand::Imagenet { out, classes, per_class, size, seed } => {
            synth::imagenet(&out, classes, per_class, size, seed)?
        }
    };
    Ok(written(&list))
}

#[derive(Args)]
pub struct MakeListsArgs {
    dataset: DatasetKind,
    #[arg(long)]
    root: PathBuf,
    /// Open every pair: sizes agree, label values valid; print per-class pixel shares.
    #[arg(long)]
    check: bool,
    /// Threads for --check (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn make_lists(args: MakeListsArgs) -> anyhow::Result<Output> {
    let root = &args.root;
    let list = match args.dataset {
        DatasetKind::Cityscapes => make_lists::cityscapes(root)?,
        DatasetKind::Lip => make_lists::lip(root)?,
        DatasetKind::Voc => make_lists::voc(root)?,
        DatasetKind::Imagenet => make_lists::imagenet(root)?,
    };
    let mut out = written(&list);
    if args.check {
        let kind = args.dataset.into();
        for w in &list {
            if w.path.file_name().is_some_and(|n| n == "test.lst") {
                continue;
            }
            // Lists are written into the root; check them by name relative to it.
            let name = w.path.file_name().map(Path::new).unwrap_or(&w.path);
            let report = make_lists::check(kind, root, name, args.threads.unwrap_or_else(cores))?;
            out.line(report.render(kind).trim_end());
        }
        out.line("check: no problems found");
    }
    Ok(out)
}
