//! Weights in and out by official names: safetensors (native), PyTorch `.pth` (read with
//! candle-core's pickle reader) and MindSpore ModelZoo `.ckpt` (`crate::mindspore`, names
//! mapped per architecture). Loading is strict by default and explains a mismatch tensor
//! by tensor.
use super::Model;
use anyhow::{bail, Context};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use tch::{Kind, Tensor};

/// How to treat names that do not line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Every model tensor must come from the file and nothing may be left over.
    Strict,
    /// Load what matches (e.g. an ImageNet backbone into a segmentation model);
    /// names the file lacks keep their initial values, extra names are ignored.
    Partial,
}

/// What a load did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadReport {
    pub loaded: usize,
    /// Model tensors the file did not provide (Partial only).
    pub missing: Vec<String>,
    /// File tensors the model has no place for (Partial only).
    pub unexpected: Vec<String>,
    /// File name → model name renames applied (OCR: `last_layer` → `aux_head`).
    pub renamed: Vec<(String, String)>,
}

/// Read every tensor of a `.safetensors`, PyTorch `.pth`/`.pt`/`.bin` or MindSpore `.ckpt`
/// file, under official names (a `.ckpt`'s architecture detected from its tags).
pub fn read_tensors(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    read_tensors_for(path, None)
}

/// [`read_tensors`], mapping a MindSpore checkpoint's names for `arch` when given.
pub fn read_tensors_for(path: &Path, arch: Option<super::Arch>) -> anyhow::Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        bail!("weights file {} does not exist", path.display());
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let tensors =
                Tensor::read_safetensors(path).with_context(|| format!("reading safetensors {}", path.display()))?;
            // A segzoo training checkpoint: its weights are the `model.` entries.
            if tensors.iter().any(|(n, _)| n == "meta.json") {
                return Ok(tensors
                    .into_iter()
                    .filter_map(|(n, t)| n.strip_prefix("model.").map(|n| (n.to_string(), t)))
                    .collect());
            }
            Ok(tensors)
        }
        Some("pth" | "pt" | "bin") => read_pth(path),
        Some("ckpt") => read_ckpt(path, arch),
        _ => bail!("{}: unknown weights format (expected .safetensors, .pth, .pt, .bin or .ckpt)", path.display()),
    }
}

/// A `.ckpt` is MindSpore's protobuf, or (PyTorch Lightning) a zip `.pth` under another name.
fn read_ckpt(path: &Path, arch: Option<super::Arch>) -> anyhow::Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"PK") {
        return read_pth(path);
    }
    let tensors = crate::mindspore::ckpt::parse_file(path, &bytes)?;
    Ok(crate::mindspore::names::to_official(arch, tensors))
}

fn read_pth(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    // A bare state dict, or one wrapped as {"state_dict": …} / {"model": …}.
    let mut last_err = None;
    for key in [None, Some("state_dict"), Some("model")] {
        match candle_core::pickle::read_all_with_key(path, key) {
            Ok(list) if !list.is_empty() => {
                return list
                    .into_iter()
                    .map(|(name, t)| Ok((name.clone(), from_candle(&t).with_context(|| format!("tensor {name}"))?)))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .with_context(|| format!("reading {}", path.display()));
            }
            Ok(_) => {}
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) => Err(anyhow::anyhow!("{}: not a readable PyTorch checkpoint: {e}", path.display())),
        None => bail!("{}: the checkpoint holds no tensors", path.display()),
    }
}

fn from_candle(t: &candle_core::Tensor) -> anyhow::Result<Tensor> {
    use candle_core::DType;
    let shape: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
    let flat = t.contiguous()?.flatten_all()?;
    let out = match t.dtype() {
        DType::F32 => Tensor::from_slice(&flat.to_vec1::<f32>()?),
        DType::F64 => Tensor::from_slice(&flat.to_vec1::<f64>()?),
        DType::I64 => Tensor::from_slice(&flat.to_vec1::<i64>()?),
        DType::U8 => Tensor::from_slice(&flat.to_vec1::<u8>()?),
        DType::U32 => Tensor::from_slice(&flat.to_dtype(DType::I64)?.to_vec1::<i64>()?),
        DType::F16 => Tensor::from_slice(&flat.to_dtype(DType::F32)?.to_vec1::<f32>()?).to_kind(Kind::Half),
        DType::BF16 => Tensor::from_slice(&flat.to_dtype(DType::F32)?.to_vec1::<f32>()?).to_kind(Kind::BFloat16),
        other => bail!("unsupported dtype {other:?}"),
    };
    Ok(out.reshape(shape))
}

/// Official checkpoint conventions: drop the `model.` (FullModel) or `module.`
/// (DataParallel) prefix when every weight has it, and the loss's class weights.
pub fn normalise_names(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().filter(|(n, _)| !n.starts_with("loss.")).collect();
    for prefix in ["model.", "module."] {
        if !tensors.is_empty() && tensors.iter().all(|(n, _)| n.starts_with(prefix)) {
            return tensors.into_iter().map(|(n, t)| (n[prefix.len()..].to_string(), t)).collect();
        }
    }
    tensors
}

fn is_nbt(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

fn listing(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title} ({}):", items.len());
    for it in items.iter().take(25) {
        let _ = writeln!(out, "    {it}");
    }
    if items.len() > 25 {
        let _ = writeln!(out, "    … and {} more", items.len() - 25);
    }
}

/// Copy `tensors` into `model` by name. `source` names the file in messages.
pub fn load_into(
    model: &Model,
    tensors: Vec<(String, Tensor)>,
    mode: LoadMode,
    source: &str,
) -> anyhow::Result<LoadReport> {
    let mut file: HashMap<String, Tensor> = normalise_names(tensors).into_iter().collect();
    let dict = model.state_dict();
    let mut report = LoadReport::default();
    if mode == LoadMode::Partial {
        report.renamed = rename_aux_head(&dict, &mut file);
    }
    let mismatch = compare(&dict, &file, &model.skipped_on_load());
    if mismatch.is_fatal(mode) {
        bail!("{}", mismatch.message(source, &model.preset, mode).trim_end());
    }
    report.loaded = copy_matching(&dict, &file)?;
    report.missing = mismatch.missing;
    report.unexpected = mismatch.unexpected;
    Ok(report)
}

/// OCRNet's official init loads a pretrained seg head (`last_layer.*`) into
/// `aux_head.*`: move each such file tensor to the model name it fills, unless the
/// file already has that name. Returns the (file name, model name) renames.
fn rename_aux_head(dict: &[(String, Tensor)], file: &mut HashMap<String, Tensor>) -> Vec<(String, String)> {
    let mut renamed = Vec::new();
    for (name, _) in dict {
        if let Some(rest) = name.strip_prefix("aux_head.") {
            let from = format!("last_layer.{rest}");
            if !file.contains_key(name) {
                if let Some(t) = file.remove(&from) {
                    renamed.push((from, name.clone()));
                    file.insert(name.clone(), t);
                }
            }
        }
    }
    renamed
}

/// How the file's tensors fail to line up with the model's.
struct Mismatch {
    /// Model names the file lacks (in model order; `num_batches_tracked` excused).
    missing: Vec<String>,
    /// File names the model has no place for (sorted; `skipped_on_load` prefixes excused).
    unexpected: Vec<String>,
    /// `name: file [..], model [..]` for names present in both with different sizes.
    wrong_shape: Vec<String>,
}

/// Compare the file's tensors with the model's state dict, name by name.
fn compare(dict: &[(String, Tensor)], file: &HashMap<String, Tensor>, skipped: &[String]) -> Mismatch {
    let model_names: HashSet<&str> = dict.iter().map(|(n, _)| n.as_str()).collect();
    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    for (name, var) in dict {
        match file.get(name) {
            None if is_nbt(name) => {} // InPlaceABN-era checkpoints have none; harmless.
            None => missing.push(name.clone()),
            Some(src) if src.size() != var.size() => {
                wrong_shape.push(format!("{name}: file {:?}, model {:?}", src.size(), var.size()))
            }
            Some(_) => {}
        }
    }
    let mut unexpected: Vec<String> = file
        .keys()
        .filter(|n| !model_names.contains(n.as_str()))
        .filter(|n| !skipped.iter().any(|p| n.starts_with(p.as_str())))
        .cloned()
        .collect();
    unexpected.sort();
    Mismatch { missing, unexpected, wrong_shape }
}

impl Mismatch {
    /// A wrong shape always fails (copying it cannot work); missing and
    /// unexpected names fail only a strict load.
    fn is_fatal(&self, mode: LoadMode) -> bool {
        !self.wrong_shape.is_empty()
            || (mode == LoadMode::Strict && (!self.missing.is_empty() || !self.unexpected.is_empty()))
    }

    /// The load error: counts, then each list (capped), then a hint towards the
    /// partial mode when a strict load failed on names alone.
    fn message(&self, source: &str, preset: &str, mode: LoadMode) -> String {
        let mut msg = format!(
            "weights {source} do not fit model {}: {} missing, {} unexpected, {} with the wrong shape\n",
            preset,
            self.missing.len(),
            self.unexpected.len(),
            self.wrong_shape.len()
        );
        listing(&mut msg, "missing from the file", &self.missing);
        listing(&mut msg, "in the file but not in the model", &self.unexpected);
        listing(&mut msg, "wrong shape", &self.wrong_shape);
        if mode == LoadMode::Strict && self.wrong_shape.is_empty() {
            msg.push_str("  (for a backbone-only load, use the partial mode: --allow-partial / model.pretrained)");
        }
        msg
    }
}

/// Copy every model tensor the file provides, converted to the model tensor's
/// kind and device; returns how many were copied.
fn copy_matching(dict: &[(String, Tensor)], file: &HashMap<String, Tensor>) -> anyhow::Result<usize> {
    tch::no_grad(|| -> anyhow::Result<usize> {
        let mut loaded = 0;
        for (name, var) in dict {
            if let Some(src) = file.get(name) {
                let src = src.to_kind(var.kind()).to_device(var.device());
                var.shallow_clone().f_copy_(&src).with_context(|| format!("copying {name}"))?;
                loaded += 1;
            }
        }
        Ok(loaded)
    })
}

/// Load a weights file into `model`.
pub fn load_file(model: &Model, path: &Path, mode: LoadMode) -> anyhow::Result<LoadReport> {
    let tensors = read_tensors_for(path, Some(model.arch()))?;
    load_into(model, tensors, mode, &path.display().to_string())
}

/// Write named tensors as safetensors through a temporary file and a rename,
/// so a crash never leaves a half-written file under the real name.
pub fn write_safetensors_atomic(tensors: &[(String, Tensor)], path: &Path) -> anyhow::Result<()> {
    // Contiguous NCHW on disk whatever the model's memory format.
    let cpu: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous())).collect();
    crate::atomic::write_with(path, |tmp| Ok(Tensor::write_safetensors(&cpu, tmp)?))
}

/// Save a model's full state dict (official names) as safetensors.
pub fn save(model: &Model, path: &Path) -> anyhow::Result<()> {
    write_safetensors_atomic(&model.state_dict(), path)
}
