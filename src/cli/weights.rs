//! Commands on weight files: `convert` (.pth or .ckpt → safetensors, any → ModelZoo .ckpt),
//! `export` (a checkpoint's weights alone, as a ModelZoo .ckpt, or its deploy form as ONNX
//! or TorchScript) and `forward` (one eval-mode pass on a stored input).
use super::info::resolve_model;
use super::Output;
use crate::mindspore::names;
use crate::models::weights::{
    load_file, load_into, normalise_names, read_tensors, read_tensors_for, write_safetensors_atomic, LoadMode,
};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ConvertArgs {
    /// Weights in: .safetensors, .pth/.pt/.bin or a MindSpore ModelZoo .ckpt.
    input: PathBuf,
    /// Weights out: .safetensors (official names) or .ckpt (the ModelZoo's names).
    output: PathBuf,
    /// Check the result loads strictly into this model (preset or config); it also says
    /// the architecture when the names alone do not.
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    num_classes: Option<i64>,
}

pub fn convert(args: ConvertArgs) -> anyhow::Result<Output> {
    let model = match &args.model {
        Some(model) => Some(crate::models::build(&resolve_model(model, &[], args.num_classes)?, tch::Device::Cpu)?),
        None => None,
    };
    let tensors = normalise_names(read_tensors_for(&args.input, model.as_ref().map(|m| m.arch()))?);
    if let Some(m) = &model {
        let copies = tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        load_into(m, copies, LoadMode::Strict, &args.input.display().to_string())?;
    }
    if is_ckpt(&args.output) {
        return match &model {
            // The model's order, which is the ModelZoo network's (safetensors keeps none).
            Some(m) => write_modelzoo_ckpt(&in_model_order(m, tensors), Some(m.arch()), &args.input, &args.output),
            None => write_modelzoo_ckpt(&tensors, None, &args.input, &args.output),
        };
    }
    write_safetensors_atomic(&tensors, &args.output)?;
    Ok(Output::text(format!("wrote {} tensors to {}\n", tensors.len(), args.output.display())))
}

/// `tensors` in `model`'s state-dict order (any the model lacks at the end).
fn in_model_order(model: &crate::models::Model, tensors: Vec<(String, tch::Tensor)>) -> Vec<(String, tch::Tensor)> {
    let order: std::collections::HashMap<String, usize> =
        model.state_dict().into_iter().enumerate().map(|(i, (n, _))| (n, i)).collect();
    let mut tensors = tensors;
    tensors.sort_by_key(|(n, _)| order.get(n).copied().unwrap_or(usize::MAX));
    tensors
}

fn is_ckpt(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "ckpt")
}

/// Write official-name tensors as a ModelZoo `.ckpt`, for `arch` or the one the names tell.
fn write_modelzoo_ckpt(
    tensors: &[(String, tch::Tensor)],
    arch: Option<crate::models::Arch>,
    source: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<Output> {
    let arch = arch.or_else(|| names::detect(tensors.iter().map(|(n, _)| n.as_str()))).with_context(|| {
        format!("{}: cannot tell the architecture from the tensor names; pass --model (or --config)", source.display())
    })?;
    let tagged = names::to_modelzoo(arch, tensors)?;
    crate::mindspore::ckpt::write(out, &tagged)?;
    Ok(Output::text(format!(
        "wrote {} tensors in the MindSpore ModelZoo's names ({arch:?}) to {}\n",
        tagged.len(),
        out.display()
    )))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The weights alone, official names (no config needed).
    Safetensors,
    /// An ONNX model (opset 17) of the deploy form, with metadata.
    Onnx,
    /// A traced TorchScript module of the deploy form (fixed input size).
    Torchscript,
    /// The weights in the MindSpore ModelZoo's names and layout, for its `export.py`
    /// (MindIR/AIR); with --config the checkpoint is first checked against that model.
    Ckpt,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A training checkpoint or weights file (.safetensors, .pth or .ckpt).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The file to write; its extension gives the format when --format is absent
    /// (.safetensors, .onnx, .pt/.torchscript, .ckpt).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum)]
    format: Option<ExportFormat>,
    /// The run's TOML config, or a preset name (onnx, torchscript).
    #[arg(long)]
    config: Option<String>,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Also export the auxiliary heads' outputs.
    #[arg(long)]
    aux: bool,
    /// Fix the input size as HEIGHTxWIDTH (default: dynamic batch, height and width).
    #[arg(long, value_parser = parse_hw)]
    input_size: Option<(i64, i64)>,
}

/// `HxW`, both positive.
fn parse_hw(s: &str) -> Result<(i64, i64), String> {
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?}: expected HEIGHTxWIDTH, e.g. 512x1024"))?;
    let n = |v: &str| {
        v.trim().parse::<i64>().ok().filter(|&v| v > 0).ok_or_else(|| format!("{s:?}: {v:?} is not a positive size"))
    };
    Ok((n(h)?, n(w)?))
}

/// A config file with overrides, or a preset with the defaults of its dataset.
fn export_config(arg: &str, set: &[String]) -> anyhow::Result<crate::config::Config> {
    let path = std::path::Path::new(arg);
    if arg.ends_with(".toml") || path.is_file() {
        return super::config_with(path, set);
    }
    anyhow::ensure!(set.is_empty(), "--set needs a config file, not a preset name");
    let preset = crate::models::registry::find_preset(arg)?;
    let mut cfg = crate::config::Config::default();
    cfg.model.name = arg.to_string();
    cfg.data.dataset = crate::app::deploy::dataset_for_classes(preset.num_classes).unwrap_or(cfg.data.dataset);
    Ok(cfg)
}

/// The format an output file's extension names, if any.
fn format_of(out: &std::path::Path) -> Option<ExportFormat> {
    match out.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "safetensors" => Some(ExportFormat::Safetensors),
        "onnx" => Some(ExportFormat::Onnx),
        "pt" | "torchscript" => Some(ExportFormat::Torchscript),
        "ckpt" => Some(ExportFormat::Ckpt),
        _ => None,
    }
}

/// `--format`, or the one `--out`'s extension names; an extension that names another
/// format than `--format` is refused (its readers would be misled).
fn export_format(given: Option<ExportFormat>, out: &std::path::Path) -> anyhow::Result<ExportFormat> {
    let name = |f: ExportFormat| format!("{f:?}").to_lowercase();
    match (given, format_of(out)) {
        (Some(f), Some(e)) if f != e => anyhow::bail!(
            "--format {} but {} names {} by its extension: change one of them",
            name(f),
            out.display(),
            name(e)
        ),
        (Some(f), _) | (None, Some(f)) => Ok(f),
        (None, None) => anyhow::bail!(
            "{}: no format in its extension (.safetensors, .onnx, .pt, .ckpt); give --format",
            out.display()
        ),
    }
}

pub fn export(args: ExportArgs) -> anyhow::Result<Output> {
    let format = export_format(args.format, &args.out)?;
    export_as(format, &args)
}

fn export_as(format: ExportFormat, args: &ExportArgs) -> anyhow::Result<Output> {
    // The weights alone need no model: safetensors always, a .ckpt without --config (its
    // names tell the architecture).
    let weights_only = match format {
        ExportFormat::Safetensors => true,
        ExportFormat::Ckpt => args.config.is_none(),
        ExportFormat::Onnx | ExportFormat::Torchscript => false,
    };
    if weights_only {
        let tensors = normalise_names(read_tensors(&args.checkpoint)?);
        anyhow::ensure!(!tensors.is_empty(), "{}: no weights", args.checkpoint.display());
        if format == ExportFormat::Ckpt {
            return write_modelzoo_ckpt(&tensors, None, &args.checkpoint, &args.out);
        }
        write_safetensors_atomic(&tensors, &args.out)?;
        return Ok(Output::text(format!("wrote {} tensors to {}\n", tensors.len(), args.out.display())));
    }
    let config = args.config.as_deref().context("--config (the run's config or a preset) is needed for this format")?;
    let cfg = export_config(config, &args.set)?;
    if format == ExportFormat::Onnx && cfg.model.numerics == crate::config::NumericsChoice::Mindspore {
        anyhow::bail!(
            "ONNX export follows the official PyTorch operators: set model.numerics = \"pytorch\" \
             (the weights are the same), or export TorchScript, which keeps the MindSpore operators"
        );
    }
    let model = crate::app::build_model(&cfg, tch::Device::Cpu)?;
    load_file(&model, &args.checkpoint, LoadMode::Strict)?;
    if format == ExportFormat::Ckpt {
        return write_modelzoo_ckpt(&model.state_dict(), Some(model.arch()), &args.checkpoint, &args.out);
    }
    let opts = crate::deploy::export::ExportOptions {
        aux: args.aux,
        input_size: args.input_size,
        metadata: crate::app::deploy::onnx_metadata(&cfg, &model, args.aux, args.input_size),
    };
    let (report, what) = match format {
        ExportFormat::Onnx => (crate::deploy::export::write_onnx(&model, &opts, &args.out)?, "ONNX"),
        _ => (crate::deploy::export::write_torchscript(&model, &opts, &args.out)?, "TorchScript"),
    };
    let size = match args.input_size {
        Some((h, w)) => format!("input 1×3×{h}×{w} (batch dynamic in ONNX)"),
        None => format!("dynamic batch and size (sides multiples of {})", model.input_multiple()),
    };
    let mut out = Output::text(format!(
        "wrote {what} {} ({:.1} MB): {}, {} BatchNorms folded, outputs {}, {size}\n",
        args.out.display(),
        report.bytes as f64 / 1e6,
        model.preset,
        report.folded,
        report.output_names.join(", ")
    ));
    if what == "ONNX" {
        out.line(format!(
            "{} nodes, {} initializers, opset {}",
            report.nodes,
            report.initializers,
            crate::deploy::onnx::OPSET
        ));
    }
    Ok(out)
}

#[derive(Args)]
pub struct ForwardArgs {
    /// A preset or a config file.
    #[arg(long)]
    model: String,
    /// Weights (.safetensors, .pth or a ModelZoo .ckpt), loaded strictly unless --allow-partial.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[arg(long)]
    num_classes: Option<i64>,
    /// Overrides of the config file's keys, e.g. model.numerics=mindspore.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Load only the tensors that match (e.g. an ImageNet backbone).
    #[arg(long)]
    allow_partial: bool,
}

pub fn forward(args: ForwardArgs) -> anyhow::Result<Output> {
    let m = crate::models::build(&resolve_model(&args.model, &args.set, args.num_classes)?, tch::Device::Cpu)?;
    if let Some(w) = &args.weights {
        let mode = if args.allow_partial { LoadMode::Partial } else { LoadMode::Strict };
        let report = load_file(&m, w, mode)?;
        tracing::info!("loaded {} tensors from {}", report.loaded, w.display());
    }
    let input = &args.input;
    let inputs = tch::Tensor::read_safetensors(input).with_context(|| format!("reading {}", input.display()))?;
    let x = inputs
        .into_iter()
        .find(|(n, _)| n == "input")
        .map(|(_, t)| t)
        .with_context(|| format!("{} has no tensor named `input`", input.display()))?;
    if x.dim() != 4 || x.size()[1] != 3 {
        anyhow::bail!("{}: `input` must be N×3×H×W, got {:?}", input.display(), x.size());
    }
    m.check_input_size(x.size()[2], x.size()[3])?;
    let outs = tch::no_grad(|| m.forward_t(&x.to_kind(tch::Kind::Float), false));
    let named: Vec<(String, tch::Tensor)> =
        m.output_names().iter().zip(outs).map(|(n, t)| (format!("output_{n}"), t)).collect();
    write_safetensors_atomic(&named, &args.output)?;
    let mut out = Output::none();
    for (n, t) in &named {
        out.line(format!("{n}: {:?}", t.size()));
    }
    Ok(out)
}
