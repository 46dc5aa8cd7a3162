//! Dataset commands: `synth` (synthetic data in real layouts), `make-lists` (list files of
//! a dataset's standard layout, or of a custom one) and `data check` (every pair of a
//! config's lists read and reported on before any training).
use super::{config_with, cores, parse_size, write_json, ExitWith, Output};
use crate::config::DatasetKind;
use crate::data::make_lists::{self, Written};
use crate::data::synth_sets::SynthMasks;
use crate::data::{custom, synth, synth_sets};
use clap::{Args, Subcommand};
use std::path::PathBuf;

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
    /// A small set in the custom layout (images/ and masks/, nested folders, PNG, JPEG and
    /// BMP images) with the classes of configs/custom_example.toml.
    Custom {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 24)]
        n: usize,
        #[arg(long, default_value = "128x96", value_parser = parse_size)]
        size: (usize, usize),
        /// Masks of class indices (grey PNG) or of the classes' colours (RGB PNG).
        #[arg(long, value_enum, default_value = "index")]
        mask_format: MaskFormatArg,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A small ADE20K (ADEChallengeData2016) fixture (n training + n validation).
    Ade20k(FixtureArgs),
    /// A small PASCAL-Context fixture, as the usual conversion leaves it (n train + n val).
    #[command(name = "pascal_context")]
    PascalContext(FixtureArgs),
    /// A small COCO-Stuff-164k fixture with raw stuffthingmaps (n train + n val).
    Cocostuff(FixtureArgs),
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

/// The size of a benchmark's small fixture.
#[derive(Args)]
pub struct FixtureArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 4)]
    n: usize,
    #[arg(long, default_value = "96x72", value_parser = parse_size)]
    size: (usize, usize),
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
        SynthCommand::Custom { out, n, size, mask_format, seed } => {
            let masks = match mask_format {
                MaskFormatArg::Index => SynthMasks::Index,
                MaskFormatArg::Rgb => SynthMasks::Rgb,
            };
            synth_sets::custom(&out, n, size.0, size.1, masks, seed)?
        }
        SynthCommand::Ade20k(a) => synth_sets::ade20k(&a.out, a.n, a.size.0, a.size.1, a.seed)?,
        SynthCommand::PascalContext(a) => synth_sets::pascal_context(&a.out, a.n, a.size.0, a.size.1, a.seed)?,
        SynthCommand::Cocostuff(a) => synth_sets::cocostuff(&a.out, a.n, a.size.0, a.size.1, a.seed)?,
    };
    Ok(written(&list))
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MaskFormatArg {
    Index,
    Rgb,
}

#[derive(Args)]
pub struct MakeListsArgs {
    dataset: DatasetKind,
    #[arg(long)]
    root: PathBuf,
    /// Open every pair and report as `segzoo data check` does (the benchmarks' classes).
    #[arg(long)]
    check: bool,
    /// Threads for --check (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Replace lists that exist with other entries.
    #[arg(long)]
    force: bool,
    /// custom: the image folder, relative to the root.
    #[arg(long, default_value = "images")]
    images: PathBuf,
    /// custom: the mask folder, relative to the root (files paired by name).
    #[arg(long, default_value = "masks")]
    masks: PathBuf,
    /// custom: the share of pairs drawn at random for val.lst.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// custom: the seed of that draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn make_lists(args: MakeListsArgs) -> anyhow::Result<Output> {
    let (root, force) = (&args.root, args.force);
    let list = match args.dataset {
        DatasetKind::Cityscapes => make_lists::cityscapes(root, force)?,
        DatasetKind::Lip => make_lists::lip(root, force)?,
        DatasetKind::Voc => make_lists::voc(root, force)?,
        DatasetKind::Imagenet => make_lists::imagenet(root, force)?,
        DatasetKind::Ade20k => make_lists::ade20k(root, force)?,
        DatasetKind::PascalContext => make_lists::pascal_context(root, force)?,
        DatasetKind::Cocostuff => make_lists::cocostuff(root, force)?,
        DatasetKind::Custom => {
            anyhow::ensure!(
                !args.check,
                "make-lists custom --check: the check needs the classes; run `segzoo data check --config C`"
            );
            let (list, scan) =
                custom::make_lists(root, &args.images, &args.masks, args.val_fraction, args.seed, force)?;
            let mut out = written(&list);
            for (what, files) in [
                ("images without a mask", &scan.images_without_mask),
                ("masks without an image", &scan.masks_without_image),
            ] {
                if let Some(first) = files.first() {
                    out.line(format!("left out: {} {what} (first: {})", files.len(), first.display()));
                }
            }
            return Ok(out);
        }
    };
    let mut out = written(&list);
    if !args.check {
        return Ok(out);
    }
    let mut cfg = crate::config::Config::default();
    (cfg.data.dataset, cfg.data.root) = (args.dataset, root.clone());
    // Lists are written into the root; checked by name relative to it (not test.lst: no labels).
    let lists: Vec<(String, PathBuf)> = list
        .iter()
        .filter(|w| w.path.file_name().is_some_and(|n| n != "test.lst"))
        .map(|w| {
            let name = w.path.file_name().map(PathBuf::from).unwrap_or_default();
            let split = w.path.file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned());
            (split, name)
        })
        .collect();
    let mut spec = crate::app::check_spec(&cfg, args.threads.unwrap_or_else(cores))?;
    spec.lists = lists;
    spec.crop = None;
    let report = crate::data::check::run(&spec)?;
    out.line(report.render().trim_end());
    Ok(if report.problems.is_empty() { out } else { out.with_exit_code(1) })
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Read every pair of the config's train and val lists (with the loader's threads) and
    /// report counts, image sizes, each class's images and pixel share, suggested class
    /// weights, and every problem with its file. Exit 0 when clean, 1 with problems, 2 on
    /// a config that cannot be used.
    Check {
        #[arg(long)]
        config: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Reading threads (default: data.num_workers, as the loader).
        #[arg(long)]
        threads: Option<usize>,
        /// Also write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

pub fn data(cmd: DataCommand) -> anyhow::Result<Output> {
    match cmd {
        DataCommand::Check { config, set, threads, json } => {
            let bad = |error: anyhow::Error| ExitWith { code: 2, error };
            let cfg = config_with(&config, &set).map_err(bad)?;
            let spec = crate::app::check_spec(&cfg, threads.unwrap_or(cfg.data.num_workers).max(1)).map_err(bad)?;
            let report = crate::data::check::run(&spec)?;
            if let Some(path) = &json {
                write_json(path, &report)?;
            }
            let out = Output::text(report.render());
            Ok(if report.problems.is_empty() { out } else { out.with_exit_code(1) })
        }
    }
}
