//! `segzoo infer`: one PNG per input image at full resolution — palette colours
//! (optionally over the image), train ids, Cityscapes label ids, or image | ground
//! truth | prediction side by side with a legend.
use super::{config_with, parse_device, Output};
use crate::config::DatasetKind;
use crate::data::decode::{is_image_path, read_rgb, write_gray_png, write_rgb_png};
use crate::data::lists::{read_list, Columns};
use crate::eval::{predict, visualise};
use crate::models::weights::{load_file, LoadMode};
use anyhow::{bail, Context};
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// The dataset palette (`<name>_infer.png`).
    Color,
    /// Train ids as grey values (`<name>.png`).
    Trainid,
    /// Cityscapes label ids for the benchmark server (`<name>.png`).
    Labelid,
    /// Image | ground truth | prediction with a legend of the classes present
    /// (`<name>_compare.png`); the ground truth comes from a list's label column.
    Compare,
}

#[derive(Args)]
pub struct InferArgs {
    #[arg(long)]
    config: PathBuf,
    #[arg(long)]
    checkpoint: PathBuf,
    /// An image, a folder of images (PNG, JPEG, BMP, TIFF; searched recursively), or a list
    /// file (first column, relative to data.root).
    #[arg(long)]
    input: PathBuf,
    /// Where predictions go; an input folder's subfolders are mirrored.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "color")]
    format: OutputFormat,
    /// Overwrite predictions already in --output (without it, their presence is an error).
    #[arg(long)]
    force: bool,
    /// Blend the colours over the image (with --format color).
    #[arg(long)]
    overlay: bool,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Forward precision: fp32, or autocast to bf16/fp16 (CUDA); default eval.precision.
    #[arg(long, value_enum)]
    precision: Option<crate::cli::bench::InferPrecision>,
    #[arg(long, value_parser = parse_device)]
    device: Option<tch::Device>,
}

/// The images `--input` names, each with the path its prediction mirrors (under
/// `--output`): one image (its file name), a folder searched recursively (paths within it),
/// or a list file (its first column, relative to data.root).
fn inputs(input: &Path, root: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    if input.is_dir() {
        let mut out = Vec::new();
        let mut stack = vec![input.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if is_image_path(&p) {
                    let rel = p.strip_prefix(input).unwrap_or(&p).to_path_buf();
                    out.push((p, rel));
                }
            }
        }
        out.sort();
        anyhow::ensure!(!out.is_empty(), "{}: no PNG, JPEG, BMP or TIFF images", input.display());
        return Ok(out);
    }
    if is_image_path(input) {
        return Ok(vec![(input.to_path_buf(), input.file_name().map(PathBuf::from).unwrap_or_default())]);
    }
    Ok(read_list(input, Columns::ImageOnly)?.into_iter().map(|e| (root.join(&e.image), e.image)).collect())
}

/// Where the prediction of the input at `rel` goes.
fn target(output: &Path, rel: &Path, format: OutputFormat) -> PathBuf {
    let stem = rel.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let name = match format {
        OutputFormat::Color => format!("{stem}_infer.png"),
        OutputFormat::Trainid | OutputFormat::Labelid => format!("{stem}.png"),
        OutputFormat::Compare => format!("{stem}_compare.png"),
    };
    output.join(rel.parent().unwrap_or(Path::new(""))).join(name)
}

/// Refuse, before any work, two inputs that would write one file, and (without
/// `--force`) a prediction already there.
fn check_targets(inputs: &[(PathBuf, PathBuf)], targets: &[PathBuf], force: bool) -> anyhow::Result<()> {
    let mut seen: HashMap<&Path, &Path> = HashMap::new();
    for ((_, rel), t) in inputs.iter().zip(targets) {
        if let Some(first) = seen.insert(t, rel) {
            bail!(
                "{} and {} would both be predicted into {}: rename one, or predict them apart",
                first.display(),
                rel.display(),
                t.display()
            );
        }
    }
    let existing: Vec<&PathBuf> = targets.iter().filter(|t| t.exists()).collect();
    if let (Some(first), false) = (existing.first(), force) {
        bail!(
            "{} already exists{}: --force overwrites existing predictions (or choose another --output)",
            first.display(),
            match existing.len() {
                1 => String::new(),
                n => format!(" (and {} more of the {} predictions)", n - 1, targets.len()),
            }
        );
    }
    Ok(())
}

pub fn run(args: InferArgs) -> anyhow::Result<Output> {
    let mut cfg = config_with(&args.config, &args.set)?;
    if let Some(p) = args.precision {
        cfg.eval.precision = p.into();
    }
    if args.format == OutputFormat::Labelid && cfg.data.dataset != DatasetKind::Cityscapes {
        bail!("--format labelid is for Cityscapes; use trainid for {:?}", cfg.data.dataset);
    }
    let inputs = inputs(&args.input, &cfg.data.root)?;
    let targets: Vec<PathBuf> = inputs.iter().map(|(_, rel)| target(&args.output, rel, args.format)).collect();
    check_targets(&inputs, &targets, args.force)?;
    let device = crate::distributed::device::for_this_process(args.device)?;
    crate::distributed::device::cudnn_autotune(device, cfg.eval.cudnn_benchmark);
    let model = crate::app::build_model(&cfg, device)?;
    load_file(&model, &args.checkpoint, LoadMode::Strict)?;
    crate::deploy::form::into_deploy_form(&model)?;
    // With a list and --format compare, each image's label from the list.
    let labelled = match args.format == OutputFormat::Compare && !args.input.is_dir() && !is_image_path(&args.input) {
        false => None,
        true => {
            let mut data = cfg.data.clone();
            data.val_list = std::path::absolute(&args.input)?;
            Some(crate::app::seg_val_dataset(&data).context("--format compare reads the labels of the list")?)
        }
    };
    let classes = crate::app::classes(&cfg.data);
    // The scales, flip and sliding window of `[eval]`, as `segzoo eval` predicts.
    let modes = crate::app::inference_options(&cfg, &model);
    let bar = crate::progress::progress(inputs.len() as u64, "infer");
    let start = std::time::Instant::now();
    let mut skipped: Vec<(PathBuf, anyhow::Error)> = Vec::new();
    for (i, ((path, rel), target)) in inputs.iter().zip(&targets).enumerate() {
        bar.inc(1);
        // An unreadable image is named and skipped; the others are still predicted.
        let read = match &labelled {
            Some(ds) => ds.load_raw(i).map(|(img, t)| (img, Some(t))),
            None => read_rgb(path).map(|img| (img, None)),
        };
        let (img, truth) = match read {
            Ok(r) => r,
            Err(e) => {
                skipped.push((rel.clone(), e));
                continue;
            }
        };
        let ids = predict::predict(&model, &img, cfg.data.mean, cfg.data.std, &modes)?;
        let (w, h) = (img.width(), img.height());
        match args.format {
            OutputFormat::Color => {
                let color = visualise::colorize(&classes, &ids, w, h);
                let color = if args.overlay { visualise::overlay(&img, &color, 0.5) } else { color };
                write_rgb_png(target, &color)?;
            }
            OutputFormat::Trainid => write_gray_png(target, w, h, &ids)?,
            OutputFormat::Labelid => write_gray_png(target, w, h, &visualise::to_label_ids(&ids))?,
            OutputFormat::Compare => {
                let panels = visualise::Comparison { image: &img, truth: truth.as_deref(), pred: &ids };
                write_rgb_png(target, &panels.render(&classes, 1.0)?)?
            }
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let written = inputs.len() - skipped.len();
    let mut out = Output::text(format!(
        "wrote {written} predictions to {} ({:.2} img/s)\n",
        args.output.display(),
        written as f64 / secs.max(1e-9)
    ));
    if skipped.is_empty() {
        return Ok(out);
    }
    out.line(format!("skipped {} of {} images, unreadable:", skipped.len(), inputs.len()));
    for (rel, e) in &skipped {
        out.line(format!("  {}: {e:#}", rel.display()));
    }
    Ok(out.with_exit_code(1))
}
