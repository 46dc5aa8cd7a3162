//! `segzoo infer`: one PNG per input image at full resolution — palette colours
//! (optionally over the image), train ids, Cityscapes label ids, or image | ground
//! truth | prediction side by side with a legend.
use super::{config_with, parse_device, Output};
use crate::config::DatasetKind;
use crate::data::decode::{read_rgb, write_gray_png, write_rgb_png};
use crate::data::lists::{read_list, Columns};
use crate::eval::{predict, visualise};
use crate::models::weights::{load_file, LoadMode};
use anyhow::Context;
use clap::Args;
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
    /// An image, a folder of images (searched recursively), or a list file (first column, relative to data.root).
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "color")]
    format: OutputFormat,
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

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// The images `--input` names: one image, a folder (recursively), or a list file.
fn inputs(input: &Path, root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if input.is_dir() {
        let mut out = Vec::new();
        let mut stack = vec![input.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if is_image(&p) {
                    out.push(p);
                }
            }
        }
        out.sort();
        anyhow::ensure!(!out.is_empty(), "{}: no PNG or JPEG images", input.display());
        return Ok(out);
    }
    if is_image(input) {
        return Ok(vec![input.to_path_buf()]);
    }
    Ok(read_list(input, Columns::ImageOnly)?.into_iter().map(|e| root.join(e.image)).collect())
}

pub fn run(args: InferArgs) -> anyhow::Result<Output> {
    let mut cfg = config_with(&args.config, &args.set)?;
    if let Some(p) = args.precision {
        cfg.eval.precision = p.into();
    }
    let device = crate::distributed::device::for_this_process(args.device)?;
    crate::distributed::device::cudnn_autotune(device, cfg.eval.cudnn_benchmark);
    let model = crate::app::build_model(&cfg, device)?;
    load_file(&model, &args.checkpoint, LoadMode::Strict)?;
    crate::deploy::form::into_deploy_form(&model)?;
    if args.format == OutputFormat::Labelid && cfg.data.dataset != DatasetKind::Cityscapes {
        anyhow::bail!("--format labelid is for Cityscapes; use trainid for {:?}", cfg.data.dataset);
    }
    let inputs = inputs(&args.input, &cfg.data.root)?;
    // With a list and --format compare, each image's label from the list.
    let labelled = match args.format == OutputFormat::Compare && !args.input.is_dir() && !is_image(&args.input) {
        false => None,
        true => {
            let mut data = cfg.data.clone();
            data.val_list = std::path::absolute(&args.input)?;
            Some(crate::app::seg_val_dataset(&data).context("--format compare reads the labels of the list")?)
        }
    };
    let names = crate::data::labels::class_names(cfg.data.dataset.into());
    // The scales, flip and sliding window of `[eval]`, as `segzoo eval` predicts.
    let modes = crate::app::inference_options(&cfg, &model);
    let output = &args.output;
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let bar = crate::progress::progress(inputs.len() as u64, "infer");
    let start = std::time::Instant::now();
    for (i, path) in inputs.iter().enumerate() {
        let (img, truth) = match &labelled {
            Some(ds) => ds.load_raw(i).map(|(img, t)| (img, Some(t)))?,
            None => (read_rgb(path)?, None),
        };
        let ids = predict::predict(&model, &img, cfg.data.mean, cfg.data.std, &modes)?;
        let (w, h) = (img.width(), img.height());
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        match args.format {
            OutputFormat::Color => {
                let color = visualise::colorize(cfg.data.dataset.into(), &ids, w, h);
                let color = if args.overlay { visualise::overlay(&img, &color, 0.5) } else { color };
                write_rgb_png(&output.join(format!("{stem}_infer.png")), &color)?;
            }
            OutputFormat::Trainid => write_gray_png(&output.join(format!("{stem}.png")), w, h, &ids)?,
            OutputFormat::Labelid => {
                write_gray_png(&output.join(format!("{stem}.png")), w, h, &visualise::to_label_ids(&ids))?
            }
            OutputFormat::Compare => {
                let panels = visualise::Comparison { image: &img, truth: truth.as_deref(), pred: &ids };
                let out = panels.render(cfg.data.dataset.into(), &names, 1.0)?;
                write_rgb_png(&output.join(format!("{stem}_compare.png")), &out)?
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    Ok(Output::text(format!(
        "wrote {} predictions to {} ({:.2} img/s)\n",
        inputs.len(),
        output.display(),
        inputs.len() as f64 / secs.max(1e-9)
    )))
}
