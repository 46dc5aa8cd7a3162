//! The MindSpore ModelZoo's parameter names and how they map onto the official PyTorch
//! names segzoo uses, per architecture, both ways.
//!
//! Common to all: BatchNorm is `gamma`/`beta`/`moving_mean`/`moving_variance` (no
//! `num_batches_tracked`), and training checkpoints also hold optimiser state, skipped on
//! import. HRNetV2 and OCRNet otherwise mirror the PyTorch attribute names; the ModelZoo's
//! OCRNet has no bias on `conv3x3_ocr.0` and `aux_head.0` (each feeds a BatchNorm, so on
//! export the bias is folded into that BatchNorm's running mean and the network computes
//! the same). RefineNet's refinement blocks are `SequentialCell`s (`X.0.layers.{i}`), and
//! BiSeNetV2's heads nest their `conv_out` differently.
use crate::models::Arch;
use anyhow::{bail, Context};
use std::collections::{HashMap, HashSet};
use tch::Tensor;

/// Optimiser and training-loop state a ModelZoo training checkpoint holds next to the
/// network: Momentum (`moments`), Adam (`moment1`, `moment2`, `beta{1,2}_power`),
/// RMSProp/Adagrad (`accum`, `stat`), the learning rate and the loop's counters.
const OPTIMISER_PREFIXES: [&str; 6] = ["moments.", "accum.", "stat.", "moment1.", "moment2.", "mean_grad."];
const OPTIMISER_TAGS: [&str; 13] = [
    "global_step",
    "momentum",
    "beta1_power",
    "beta2_power",
    "learning_rate",
    "scale_sense",
    "current_iterator_step",
    "last_overflow_iterator_step",
    "epoch_num",
    "step_num",
    "loss_scale",
    "weight_decay",
    "lr",
];

/// Is `tag` optimiser or loop state rather than a network tensor?
pub fn is_training_state(tag: &str) -> bool {
    OPTIMISER_TAGS.contains(&tag) || OPTIMISER_PREFIXES.iter().any(|p| tag.starts_with(p))
}

const BN_PAIRS: [(&str, &str); 4] =
    [("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")];

/// OCRNet's convolutions that have a bias in PyTorch and none in the ModelZoo, with the
/// BatchNorm each feeds.
const OCR_BIASLESS: [(&str, &str); 2] = [("conv3x3_ocr.0", "conv3x3_ocr.1"), ("aux_head.0", "aux_head.1")];

const BISENET_AUX: [&str; 4] = ["aux2", "aux3", "aux4", "aux5_4"];

/// The architecture a set of names (ModelZoo or official) belongs to, when it tells.
pub fn detect<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Option<Arch> {
    let any = |p: &str| {
        let inner = format!(".{p}");
        names.clone().into_iter().any(|n| n.starts_with(p) || n.contains(&inner))
    };
    if any("ocr_distri_head.") {
        Some(Arch::OcrNet)
    } else if any("mflow_conv_g") {
        Some(Arch::RefineNet)
    } else if any("detail.") && any("segment.") {
        Some(Arch::BiSeNetV2)
    } else if any("last_layer.") {
        Some(Arch::HrnetV2)
    } else if any("incre_modules.") {
        Some(Arch::HrnetCls)
    } else {
        None
    }
}

/// `prefix.<i>.rest` → (prefix, i, rest) for the first `.<segment>.<digits>.` of `name`.
fn split_at<'a>(name: &'a str, segment: &str) -> Option<(&'a str, usize, &'a str)> {
    let marker = format!(".{segment}.");
    let at = name.find(&marker)?;
    let after = &name[at + marker.len()..];
    let (index, rest) = after.split_once('.')?;
    Some((&name[..at], index.parse().ok()?, rest))
}

/// A ModelZoo tag's official name for `arch` (unknown: the renames all share).
fn tag_to_official(arch: Option<Arch>, tag: &str) -> String {
    let name = match tag.rsplit_once('.') {
        Some((module, leaf)) => match BN_PAIRS.iter().find(|(ms, _)| *ms == leaf) {
            Some((_, pt)) => format!("{module}.{pt}"),
            None => tag.to_string(),
        },
        None => tag.to_string(),
    };
    match arch {
        Some(Arch::RefineNet) => refinenet_to_official(&name).unwrap_or(name),
        Some(Arch::BiSeNetV2) => bisenet_to_official(&name).unwrap_or(name),
        _ => name,
    }
}

/// `X.0.layers.{i}.weight` → `X.0.{i+1}_outvar_dimred.weight` (chained residual pooling);
/// `X.0.layers.{i}.1.*` → `X.0.{i+1}_conv.*` and `X.0.layers.{i}.3.*` →
/// `X.0.{i+1}_conv_relu_varout_dimred.*` (residual conv units).
fn refinenet_to_official(name: &str) -> Option<String> {
    let (block, i, rest) = split_at(name, "layers")?;
    let k = i + 1;
    Some(match rest.split_once('.') {
        Some(("1", leaf)) => format!("{block}.{k}_conv.{leaf}"),
        Some(("3", leaf)) => format!("{block}.{k}_conv_relu_varout_dimred.{leaf}"),
        _ => format!("{block}.{k}_outvar_dimred.{rest}"),
    })
}

fn refinenet_to_modelzoo(name: &str) -> Option<String> {
    let (block, leaf) = name.rsplit_once('.')?;
    let (head, unit) = block.rsplit_once('.')?;
    let (k, kind) = unit.split_once('_')?;
    let i = k.parse::<usize>().ok()?.checked_sub(1)?;
    Some(match kind {
        "conv" => format!("{head}.layers.{i}.1.{leaf}"),
        "conv_relu_varout_dimred" => format!("{head}.layers.{i}.3.{leaf}"),
        "outvar_dimred" => format!("{head}.layers.{i}.{leaf}"),
        _ => return None,
    })
}

/// `head.conv_out.0.*` → `head.conv_out.1.*`; `auxN.conv_out.1.*` → `auxN.conv_out.0.1.*`;
/// `auxN.conv_out.2.*` → `auxN.conv_out.1.*`.
fn bisenet_to_official(name: &str) -> Option<String> {
    let (head, rest) = name.split_once(".conv_out.")?;
    let (index, leaf) = rest.split_once('.')?;
    Some(match (head, index) {
        ("head", "0") => format!("head.conv_out.1.{leaf}"),
        (h, "1") if BISENET_AUX.contains(&h) => format!("{h}.conv_out.0.1.{leaf}"),
        (h, "2") if BISENET_AUX.contains(&h) => format!("{h}.conv_out.1.{leaf}"),
        _ => return None,
    })
}

fn bisenet_to_modelzoo(name: &str) -> Option<String> {
    let (head, rest) = name.split_once(".conv_out.")?;
    Some(match head {
        "head" => format!("head.conv_out.0.{}", rest.strip_prefix("1.")?),
        h if BISENET_AUX.contains(&h) => match rest.strip_prefix("0.1.") {
            Some(leaf) => format!("{h}.conv_out.1.{leaf}"),
            None => format!("{h}.conv_out.2.{}", rest.strip_prefix("1.")?),
        },
        _ => return None,
    })
}

/// A ModelZoo checkpoint's tensors under official names: training state dropped, names
/// mapped for `arch` (detected from the tags when `None`), OCRNet's missing biases zero.
pub fn to_official(arch: Option<Arch>, tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let network: Vec<(String, Tensor)> = tensors.into_iter().filter(|(tag, _)| !is_training_state(tag)).collect();
    let arch = arch.or_else(|| detect(network.iter().map(|(n, _)| n.as_str())));
    let mut out: Vec<(String, Tensor)> = network.into_iter().map(|(tag, t)| (tag_to_official(arch, &tag), t)).collect();
    if arch == Some(Arch::OcrNet) {
        for (conv, _) in OCR_BIASLESS {
            let (weight, bias) = (format!("{conv}.weight"), format!("{conv}.bias"));
            let at = out.iter().position(|(n, _)| *n == weight);
            if let (Some(at), false) = (at, out.iter().any(|(n, _)| *n == bias)) {
                let w = &out[at].1;
                let zeros = Tensor::zeros([w.size()[0]], (w.kind(), w.device()));
                out.insert(at + 1, (bias, zeros));
            }
        }
    }
    out
}

/// Official-name tensors (a state dict) under the ModelZoo's tags for `arch`, as the
/// ModelZoo network's `load_param_into_net(strict_load=True)` expects them.
pub fn to_modelzoo(arch: Arch, tensors: &[(String, Tensor)]) -> anyhow::Result<Vec<(String, Tensor)>> {
    if arch == Arch::HrnetCls {
        bail!(
            "the HRNet-W18-C seed is an Ascend PyTorch port whose checkpoints are .pth: \
             export safetensors (or convert to .pth) instead of .ckpt"
        );
    }
    let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    // BatchNorm modules are those with running statistics.
    let bn_modules: HashSet<&str> = tensors.iter().filter_map(|(n, _)| n.strip_suffix(".running_mean")).collect();
    let mut folded: HashMap<String, Tensor> = HashMap::new();
    if arch == Arch::OcrNet {
        for (conv, bn) in OCR_BIASLESS {
            let bias = by_name.get(format!("{conv}.bias").as_str());
            let mean = by_name.get(format!("{bn}.running_mean").as_str());
            if let (Some(bias), Some(mean)) = (bias, mean) {
                // BN(x + b) with mean m is BN(x) with mean m − b, in eval and in training.
                let mean = (*mean - *bias).to_kind(mean.kind());
                folded.insert(format!("{bn}.running_mean"), mean);
            }
        }
    }
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let module_of_bias = name.strip_suffix(".bias");
        if arch == Arch::OcrNet && OCR_BIASLESS.iter().any(|(conv, _)| module_of_bias == Some(*conv)) {
            continue;
        }
        let (module, leaf) = name.rsplit_once('.').with_context(|| format!("tensor name `{name}` has no module"))?;
        let mut tag = if bn_modules.contains(&module) {
            match BN_PAIRS.iter().find(|(_, pt)| *pt == leaf) {
                Some((ms, _)) => format!("{module}.{ms}"),
                None => name.clone(),
            }
        } else {
            name.clone()
        };
        tag = match arch {
            Arch::RefineNet => refinenet_to_modelzoo(&tag).unwrap_or(tag),
            Arch::BiSeNetV2 => bisenet_to_modelzoo(&tag).unwrap_or(tag),
            _ => tag,
        };
        let value = folded.remove(name).unwrap_or_else(|| t.shallow_clone());
        out.push((tag, value));
    }
    Ok(modelzoo_bn_order(out))
}

/// MindSpore's BatchNorm2d creates `moving_mean`, `moving_variance`, `gamma`, `beta` in
/// that order, and `save_checkpoint` writes parameters in creation order: reorder each
/// BatchNorm's four tensors so an exported file lines up with a ModelZoo one.
fn modelzoo_bn_order(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    const ORDER: [&str; 4] = ["moving_mean", "moving_variance", "gamma", "beta"];
    let rank = |tag: &str| tag.rsplit_once('.').and_then(|(_, leaf)| ORDER.iter().position(|o| *o == leaf));
    let module = |tag: &str| tag.rsplit_once('.').map(|(m, _)| m.to_string()).unwrap_or_default();
    let mut out: Vec<(String, Tensor)> = Vec::with_capacity(tensors.len());
    let mut group: Vec<(String, Tensor)> = Vec::new();
    for (tag, t) in tensors {
        let in_group = group.first().is_some_and(|(g, _)| module(g) == module(&tag)) && rank(&tag).is_some();
        if !in_group {
            group.sort_by_key(|(g, _)| rank(g));
            out.append(&mut group);
        }
        if rank(&tag).is_some() {
            group.push((tag, t));
        } else {
            out.push((tag, t));
        }
    }
    group.sort_by_key(|(g, _)| rank(g));
    out.append(&mut group);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn refinenet_and_bisenet_renames_invert_each_other() {
        for (ms, pt) in [
            ("mflow_conv_g1_pool.0.layers.2.weight", "mflow_conv_g1_pool.0.3_outvar_dimred.weight"),
            ("adapt_stage1_b.0.layers.1.1.bias", "adapt_stage1_b.0.2_conv.bias"),
            ("mflow_conv_g4_b.0.layers.0.3.weight", "mflow_conv_g4_b.0.1_conv_relu_varout_dimred.weight"),
        ] {
            assert_eq!(refinenet_to_official(ms).as_deref(), Some(pt));
            assert_eq!(refinenet_to_modelzoo(pt).as_deref(), Some(ms));
        }
        assert_eq!(refinenet_to_modelzoo("layer1.0.conv1.weight"), None);
        assert_eq!(refinenet_to_modelzoo("p_ims1d2_outl1_dimred.weight"), None);
        for (ms, pt) in [
            ("head.conv_out.0.weight", "head.conv_out.1.weight"),
            ("aux2.conv_out.1.conv.weight", "aux2.conv_out.0.1.conv.weight"),
            ("aux5_4.conv_out.1.bn.gamma", "aux5_4.conv_out.0.1.bn.gamma"),
            ("aux3.conv_out.2.bias", "aux3.conv_out.1.bias"),
        ] {
            assert_eq!(bisenet_to_official(ms).as_deref(), Some(pt));
            assert_eq!(bisenet_to_modelzoo(pt).as_deref(), Some(ms));
        }
    }

    #[test]
    fn import_drops_training_state_renames_bn_and_zeroes_ocr_biases() {
        let file = vec![
            ("conv3x3_ocr.0.weight".to_string(), Tensor::ones([3, 2, 3, 3], (tch::Kind::Float, tch::Device::Cpu))),
            ("conv3x3_ocr.1.gamma".to_string(), t(&[1.0, 2.0, 3.0])),
            ("conv3x3_ocr.1.moving_variance".to_string(), t(&[1.0, 1.0, 1.0])),
            ("ocr_distri_head.conv_bn_dropout.0.weight".to_string(), t(&[0.5])),
            ("moments.conv3x3_ocr.0.weight".to_string(), t(&[0.0])),
            ("global_step".to_string(), t(&[3.0])),
            ("learning_rate".to_string(), t(&[0.1])),
        ];
        let out = to_official(None, file);
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv3x3_ocr.0.weight",
                "conv3x3_ocr.0.bias",
                "conv3x3_ocr.1.weight",
                "conv3x3_ocr.1.running_var",
                "ocr_distri_head.conv_bn_dropout.0.weight"
            ]
        );
        assert!(out[1].1.equal(&Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu))));
    }

    #[test]
    fn ocr_export_folds_the_bias_into_the_running_mean() {
        let sd = vec![
            ("aux_head.0.weight".to_string(), t(&[1.0])),
            ("aux_head.0.bias".to_string(), t(&[0.25, -1.0])),
            ("aux_head.1.weight".to_string(), t(&[1.0, 1.0])),
            ("aux_head.1.bias".to_string(), t(&[0.0, 0.0])),
            ("aux_head.1.running_mean".to_string(), t(&[1.0, 2.0])),
            ("aux_head.1.running_var".to_string(), t(&[1.0, 1.0])),
            ("aux_head.1.num_batches_tracked".to_string(), Tensor::from(4i64)),
        ];
        let out = to_modelzoo(Arch::OcrNet, &sd).expect("export");
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "aux_head.0.weight",
                "aux_head.1.moving_mean",
                "aux_head.1.moving_variance",
                "aux_head.1.gamma",
                "aux_head.1.beta"
            ]
        );
        assert!(out[1].1.equal(&t(&[0.75, 3.0])));
        assert!(to_modelzoo(Arch::HrnetCls, &sd).is_err());
    }
}
