//! The deploy form of a model: every BatchNorm that reads a convolution's output (and only
//! it) is folded into that convolution — w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β —
//! found on the traced eval-mode graph, so each architecture gets it without listing its
//! pairs. Folding is exact in real arithmetic; in fp32 outputs move by ~1e-6 relative.
use super::trace::{trace, Constant, Graph};
use crate::models::Model;
use anyhow::{bail, Context};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// A convolution → BatchNorm pair of the traced graph, by module name.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub conv: String,
    pub bn: String,
    pub eps: f64,
}

/// Finds the foldable pairs: a convolution whose weight is a model parameter and whose
/// output feeds nothing but an eval-mode BatchNorm whose four tensors are model tensors.
pub fn find_pairs(graph: &Graph, input_names: &[String]) -> Vec<Pair> {
    let name_of: HashMap<u64, &str> = graph.inputs.iter().zip(input_names).map(|(v, n)| (v.id, n.as_str())).collect();
    let consts = graph.constants();
    let uses = graph.use_counts();
    let convs: HashMap<u64, &str> = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.kind.as_str(), "aten::conv2d" | "aten::_convolution") && n.outputs.len() == 1)
        .filter_map(|n| {
            let module = name_of.get(n.inputs.get(1)?)?.strip_suffix(".weight")?;
            (uses.get(&n.outputs[0].id) == Some(&1)).then_some((n.outputs[0].id, module))
        })
        .collect();
    let mut pairs = Vec::new();
    for n in graph.nodes.iter().filter(|n| n.kind == "aten::batch_norm" && n.inputs.len() == 9) {
        let Some(conv) = convs.get(&n.inputs[0]) else { continue };
        let training = matches!(consts.get(&n.inputs[5]), Some(Constant::Bool(true)));
        let eps = match consts.get(&n.inputs[7]) {
            Some(Constant::Float(v)) => Constant::as_f64(v),
            _ => None,
        };
        let names: Option<Vec<&str>> = n.inputs[1..5].iter().map(|id| name_of.get(id).copied()).collect();
        let (Some(eps), Some(names), false) = (eps, names, training) else { continue };
        let Some(bn) = names[0].strip_suffix(".weight") else { continue };
        let expected = ["weight", "bias", "running_mean", "running_var"].map(|s| format!("{bn}.{s}"));
        if names.iter().zip(&expected).all(|(a, b)| *a == b) {
            pairs.push(Pair { conv: conv.to_string(), bn: bn.to_string(), eps });
        }
    }
    pairs
}

/// Folds `model`'s BatchNorms into their convolutions in place (the model becomes eval
/// only); `sample` is an input of a size the model accepts. Returns the number folded.
pub fn fold_batch_norm(model: &Model, sample: &Tensor) -> anyhow::Result<usize> {
    if model.is_folded() {
        return Ok(model.fusion().folded_count());
    }
    let state = model.state_dict();
    let names: Vec<String> = std::iter::once("image".to_string()).chain(state.iter().map(|(n, _)| n.clone())).collect();
    let inputs: Vec<Tensor> =
        std::iter::once(sample.shallow_clone()).chain(state.iter().map(|(_, t)| t.shallow_clone())).collect();
    let traced = tch::no_grad(|| trace(&inputs, &mut |ins| Ok(model.forward_t(&ins[0], false))))?;
    let pairs = find_pairs(&traced.graph, &names);
    let tensors: HashMap<&str, &Tensor> = state.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let get = |n: String| tensors.get(n.as_str()).copied().with_context(|| format!("no tensor {n}"));
    for p in &pairs {
        let (w, gamma, beta) =
            (get(format!("{}.weight", p.conv))?, get(format!("{}.weight", p.bn))?, get(format!("{}.bias", p.bn))?);
        let (mean, var) = (get(format!("{}.running_mean", p.bn))?, get(format!("{}.running_var", p.bn))?);
        let bias = tensors.get(format!("{}.bias", p.conv).as_str()).copied();
        let (fw, fb) = tch::no_grad(|| {
            let d = |t: &Tensor| t.to_kind(Kind::Double);
            let scale = d(gamma) / (d(var) + p.eps).sqrt();
            let fw = d(w) * scale.view([-1, 1, 1, 1]);
            let b = bias.map(d).unwrap_or_else(|| d(mean).zeros_like());
            let fb = (b - d(mean)) * &scale + d(beta);
            (fw.to_kind(w.kind()), fb.to_kind(w.kind()))
        });
        if !model.fusion().fold(&p.conv, &p.bn, fw, fb) {
            bail!("{}: cannot fold BatchNorm {} into convolution {}", model.preset, p.bn, p.conv);
        }
    }
    Ok(pairs.len())
}

pub(crate) fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
