//! Export of a model's deploy form (BatchNorm folded) to ONNX or TorchScript, both from
//! the traced forward, written atomically. The caller supplies the metadata (preset,
//! classes, normalisation, palette, …) that goes into the ONNX file's `metadata_props`.
use super::fold::{fold_batch_norm, gcd};
use super::onnx::{translate, GraphSpec, OPSET};
use super::onnx_proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use super::symbolic::Dims;
use super::trace::{trace, Trace};
use crate::models::Model;
use anyhow::Context;
use prost::Message;
use std::path::Path;
use tch::{Kind, Tensor};

/// What to export besides the main output.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Also the auxiliary heads' outputs.
    pub aux: bool,
    /// A fixed input height and width (else dynamic where the model allows).
    pub input_size: Option<(i64, i64)>,
    /// `metadata_props` of the ONNX file, in order.
    pub metadata: Vec<(String, String)>,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub folded: usize,
    pub nodes: usize,
    pub initializers: usize,
    pub bytes: usize,
    pub output_names: Vec<String>,
}

/// The exported outputs' names, main first as the forward returns them.
fn outputs(model: &Model, aux: bool) -> Vec<(usize, String)> {
    let main = model.main_output_index();
    let names = model.output_names();
    names.iter().enumerate().filter(|(i, _)| aux || *i == main).map(|(i, n)| (i, n.to_string())).collect()
}

/// Checks `size` against the model's input multiple.
fn check_size(model: &Model, opts: &ExportOptions) -> anyhow::Result<()> {
    if let Some((h, w)) = opts.input_size {
        anyhow::ensure!(h > 0 && w > 0, "--input-size must be positive, got {h}x{w}");
        model.check_input_size(h, w).context("--input-size")?;
    }
    Ok(())
}

/// A forward to export: the tensors it reads (graph inputs, by identity; they become
/// initializers under these names), the function, and its outputs' names.
pub struct Exportable<'a> {
    pub name: String,
    pub params: Vec<(String, Tensor)>,
    pub forward: &'a dyn Fn(&Tensor) -> Vec<Tensor>,
    pub output_names: Vec<String>,
    /// Input sides must be multiples of this.
    pub input_multiple: i64,
}

/// Traces `e` at `dims`; graph inputs are the image, then `e.params` in order.
fn trace_at(e: &Exportable, dims: Dims, device: tch::Device) -> anyhow::Result<Trace> {
    let image = Tensor::zeros([dims.n, 3, dims.h, dims.w], (Kind::Float, device));
    let inputs: Vec<Tensor> = std::iter::once(image).chain(e.params.iter().map(|(_, t)| t.shallow_clone())).collect();
    tch::no_grad(|| trace(&inputs, &mut |ins| Ok((e.forward)(&ins[0]))))
}

/// The ONNX model of any forward (tests export building blocks and test-only nets).
pub fn onnx_from(e: &Exportable, opts: &ExportOptions, device: tch::Device) -> anyhow::Result<ModelProto> {
    // Traced sides are multiples of 32 at least, so every stride-32 map is a whole size.
    let m = e.input_multiple.max(1);
    let at = Dims::pair(m * 32 / gcd(m, 32), opts.input_size);
    let (t0, t1) = (trace_at(e, at[0], device)?, trace_at(e, at[1], device)?);
    let names: Vec<String> =
        std::iter::once("image".to_string()).chain(e.params.iter().map(|(n, _)| n.clone())).collect();
    let params: Vec<Tensor> = e.params.iter().map(|(_, t)| t.shallow_clone()).collect();
    let spec =
        GraphSpec { input_names: &names, params: &params, output_names: &e.output_names, at, fixed: opts.input_size };
    let graph = translate(&[t0, t1], &spec).with_context(|| format!("exporting {} to ONNX", e.name))?;
    Ok(ModelProto {
        ir_version: 8,
        producer_name: "segzoo".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: format!("{}, exported by segzoo", e.name),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        metadata_props: opts
            .metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone() })
            .collect(),
    })
}

/// The ONNX model of `model`'s deploy form (its BatchNorms are folded first).
pub fn onnx_model(model: &Model, opts: &ExportOptions) -> anyhow::Result<ModelProto> {
    check_size(model, opts)?;
    crate::deploy::form::into_deploy_form(model)?;
    let select = outputs(model, opts.aux);
    let forward = |x: &Tensor| {
        let mut all = model.forward_t(x, false);
        select.iter().map(|(i, _)| std::mem::replace(&mut all[*i], Tensor::new())).collect()
    };
    let e = Exportable {
        name: format!("{} (BatchNorm folded)", model.preset),
        params: model.state_dict().into_iter().chain(model.fusion().folded_tensors()).collect(),
        forward: &forward,
        output_names: select.iter().map(|(_, n)| n.clone()).collect(),
        input_multiple: model.input_multiple(),
    };
    onnx_from(&e, opts, model.device())
}

/// Writes an ONNX model to `path` (whole or not at all).
pub fn write_proto(proto: &ModelProto, path: &Path) -> anyhow::Result<()> {
    crate::atomic::write_bytes(path, &proto.encode_to_vec())
}

/// Writes `model`'s deploy form as ONNX to `path` (whole or not at all).
pub fn write_onnx(model: &Model, opts: &ExportOptions, path: &Path) -> anyhow::Result<ExportReport> {
    let proto = onnx_model(model, opts)?;
    let graph = proto.graph.as_ref().context("no graph")?;
    let report = ExportReport {
        folded: model.fusion().folded_count(),
        nodes: graph.node.len(),
        initializers: graph.initializer.len(),
        bytes: proto.encoded_len(),
        output_names: graph.output.iter().map(|o| o.name.clone()).collect(),
    };
    write_proto(&proto, path)?;
    Ok(report)
}

/// Writes `model`'s deploy form as a traced TorchScript module (fixed input size: the
/// tracer records sizes as constants).
pub fn write_torchscript(model: &Model, opts: &ExportOptions, path: &Path) -> anyhow::Result<ExportReport> {
    check_size(model, opts)?;
    let (h, w) = opts.input_size.context("TorchScript export needs --input-size HxW (its sizes are fixed)")?;
    let image = Tensor::zeros([1, 3, h, w], (Kind::Float, model.device()));
    fold_batch_norm(model, &image)?;
    // TorchScript bakes the weights in as constants, which the tracer refuses while they
    // require grad; the deploy form never trains.
    for (_, t) in model.state_dict() {
        let _ = t.shallow_clone().set_requires_grad(false);
    }
    let select = outputs(model, opts.aux);
    let module = tch::no_grad(|| {
        tch::CModule::create_by_tracing("segzoo", "forward", &[image], &mut |ins| {
            let mut all = model.forward_t(&ins[0], false);
            select.iter().map(|(i, _)| std::mem::replace(&mut all[*i], Tensor::new())).collect()
        })
    })
    .context("tracing to TorchScript")?;
    crate::atomic::write_with(path, |tmp| Ok(module.save(tmp)?))?;
    Ok(ExportReport {
        folded: model.fusion().folded_count(),
        nodes: 0,
        initializers: 0,
        bytes: std::fs::metadata(path).map_or(0, |m| m.len() as usize),
        output_names: select.into_iter().map(|(_, n)| n).collect(),
    })
}
