//! Informational commands: `env`, `config show`, `models`, `model-info`.
use super::{config_with, Output};
use crate::models::{registry, ModelSpec};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct EnvArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn env(args: EnvArgs) -> anyhow::Result<Output> {
    let report = crate::envinfo::EnvReport::collect();
    if args.json {
        Output::json(&report)
    } else {
        Ok(Output::text(format!("{report}\n")))
    }
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved configuration (file + overrides + defaults) as TOML.
    Show {
        /// The TOML config file.
        file: PathBuf,
        /// Override a value: --set section.key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

pub fn config(cmd: ConfigCommand) -> anyhow::Result<Output> {
    let ConfigCommand::Show { file, set } = cmd;
    let config = config_with(&file, &set)?;
    Ok(Output::text(toml::to_string(&config).map_err(|e| anyhow::anyhow!("serialising the resolved config: {e}"))?))
}

pub fn models() -> anyhow::Result<Output> {
    let mut out = Output::none();
    for p in registry::presets() {
        out.line(format!("{:<24} {}", p.name, p.about));
    }
    Ok(out)
}

/// The model an argument names — a preset, or a TOML config whose `[model]` section is
/// used with its dataset's class count — with `--num-classes` applied.
pub fn resolve_model(arg: &str, set: &[String], num_classes: Option<i64>) -> anyhow::Result<ModelSpec> {
    let path = Path::new(arg);
    let mut spec = if arg.ends_with(".toml") || path.is_file() {
        let cfg = config_with(path, set)?;
        crate::app::model_spec(&cfg.model, Some(crate::app::specs::dataset_classes(&cfg)))
    } else {
        if !set.is_empty() {
            anyhow::bail!("--set needs a config file, not a preset name");
        }
        registry::find_preset(arg)?;
        ModelSpec::preset(arg)
    };
    if num_classes.is_some() {
        spec.num_classes = num_classes;
    }
    Ok(spec)
}

#[derive(Args)]
pub struct ModelInfoArgs {
    /// A preset (e.g. hrnetv2_w48) or a TOML config with a [model] section.
    model: String,
    /// Number of classes (default: the config's dataset, else the preset's).
    #[arg(long)]
    num_classes: Option<i64>,
    /// List every state-dict tensor with its shape.
    #[arg(long)]
    tensors: bool,
    /// Print {"num_params", "num_buffers", "tensors": [{"name", "shape"}]} as JSON.
    #[arg(long)]
    json: bool,
    /// Override config values (with a config file): --set section.key=value.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// `model-info --json`: the shape of the reference manifests.
#[derive(serde::Serialize)]
struct ModelInfo<'a> {
    model: &'a str,
    num_classes: i64,
    num_params: i64,
    num_buffers: usize,
    num_state_dict_entries: usize,
    outputs: Vec<&'static str>,
    tensors: Vec<TensorShape<'a>>,
}

#[derive(serde::Serialize)]
struct TensorShape<'a> {
    name: &'a str,
    shape: &'a [i64],
}

pub fn model_info(args: ModelInfoArgs) -> anyhow::Result<Output> {
    let spec = resolve_model(&args.model, &args.set, args.num_classes)?;
    let m = crate::models::build(&spec, tch::Device::Cpu)?;
    let infos = m.tensor_infos();
    if args.json {
        return Output::json(&ModelInfo {
            model: &m.preset,
            num_classes: m.num_classes,
            num_params: m.num_params(),
            num_buffers: m.num_buffers(),
            num_state_dict_entries: infos.len(),
            outputs: m.output_names(),
            tensors: infos.iter().map(|t| TensorShape { name: &t.name, shape: &t.shape }).collect(),
        });
    }
    let mut out = Output::none();
    out.line(format!("model:      {}", m.preset));
    out.line(format!("classes:    {}", m.num_classes));
    out.line(format!("parameters: {}", m.num_params()));
    out.line(format!("buffers:    {}", m.num_buffers()));
    out.line(format!("outputs:    {}", m.output_names().join(", ")));
    if args.tensors {
        for t in &infos {
            out.line(format!("{:<70} {:?}", t.name, t.shape));
        }
    }
    Ok(out)
}
