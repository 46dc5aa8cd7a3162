//! Commands on weight files: `convert` (.pth → safetensors), `export` (a checkpoint's
//! weights alone) and `forward` (one eval-mode pass on a stored input).
use super::info::resolve_model;
use super::Output;
use crate::models::weights::{load_file, load_into, normalise_names, read_tensors, write_safetensors_atomic, LoadMode};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ConvertArgs {
    input: PathBuf,
    output: PathBuf,
    /// Check the result loads strictly into this model (preset or config).
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    num_classes: Option<i64>,
}

pub fn convert(args: ConvertArgs) -> anyhow::Result<Output> {
    let tensors = normalise_names(read_tensors(&args.input)?);
    if let Some(model) = &args.model {
        let m = crate::models::build(&resolve_model(model, &[], args.num_classes)?, tch::Device::Cpu)?;
        let copies = tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        load_into(&m, copies, LoadMode::Strict, &args.input.display().to_string())?;
    }
    write_safetensors_atomic(&tensors, &args.output)?;
    Ok(Output::text(format!("wrote {} tensors to {}\n", tensors.len(), args.output.display())))
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

pub fn export(args: ExportArgs) -> anyhow::Result<Output> {
    let tensors = normalise_names(read_tensors(&args.checkpoint)?);
    anyhow::ensure!(!tensors.is_empty(), "{}: no weights", args.checkpoint.display());
    write_safetensors_atomic(&tensors, &args.out)?;
    Ok(Output::text(format!("wrote {} tensors to {}\n", tensors.len(), args.out.display())))
}

#[derive(Args)]
pub struct ForwardArgs {
    /// A preset or a config file.
    #[arg(long)]
    model: String,
    /// Weights (.safetensors or .pth), loaded strictly unless --allow-partial.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[arg(long)]
    num_classes: Option<i64>,
    /// Load only the tensors that match (e.g. an ImageNet backbone).
    #[arg(long)]
    allow_partial: bool,
}

pub fn forward(args: ForwardArgs) -> anyhow::Result<Output> {
    let m = crate::models::build(&resolve_model(&args.model, &[], args.num_classes)?, tch::Device::Cpu)?;
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
