//! Translates a traced forward (two traces at different input sizes, `symbolic.rs`) into
//! an ONNX graph, opset 17: each ATen op of the small, closed set segzoo's networks use
//! maps onto one or a few ONNX nodes ([`SUPPORTED`]); any other op is an error naming it.
//! Parameters become initializers under their state-dict names. The translation of each op
//! is in `ops.rs`; sizes that vary with the input, read off tensors, in `dims.rs`.
mod dims;
mod ops;

use super::onnx_proto::{
    data_type, AttributeProto as Attr, DimValue, Dimension, GraphProto, NodeProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};
use super::symbolic::{solve, Dim, Dims, Expr, SymInt};
use super::trace::{Constant, Graph, Trace};
use anyhow::{bail, ensure, Context};
use std::collections::{HashMap, HashSet};
use tch::{Kind, Tensor};

pub const OPSET: i64 = 17;

/// The ATen ops the exporter translates (docs/deployment.md).
pub const SUPPORTED: &[&str] = &[
    "aten::_convolution",
    "aten::conv2d",
    "aten::batch_norm",
    "aten::relu",
    "aten::relu_",
    "aten::sigmoid",
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::mul",
    "aten::div",
    "aten::cat",
    "aten::upsample_bilinear2d",
    "aten::upsample_nearest2d",
    "aten::max_pool2d",
    "aten::avg_pool2d",
    "aten::adaptive_avg_pool2d",
    "aten::mean",
    "aten::linear",
    "aten::matmul",
    "aten::softmax",
    "aten::view",
    "aten::reshape",
    "aten::flatten",
    "aten::permute",
    "aten::transpose",
    "aten::unsqueeze",
    "aten::to",
    "aten::contiguous",
    "aten::clone",
    "aten::detach",
    "aten::dropout",
    "aten::feature_dropout",
];

/// What the translation needs besides the traces.
pub struct GraphSpec<'a> {
    /// Names of the graph inputs in trace order: the image first, then parameters.
    pub input_names: &'a [String],
    /// The tensors behind `input_names[1..]`.
    pub params: &'a [Tensor],
    pub output_names: &'a [String],
    pub at: [Dims; 2],
    /// The image size when it is fixed (`--input-size`).
    pub fixed: Option<(i64, i64)>,
}

struct Translator<'a> {
    g: &'a Graph,
    g1: &'a Graph,
    spec: &'a GraphSpec<'a>,
    constants: &'a [Tensor],
    /// Value id in the first trace → the same value's id in the second.
    twin: HashMap<u64, u64>,
    consts: [HashMap<u64, &'a Constant>; 2],
    lists: HashMap<u64, Vec<u64>>,
    sizes: [HashMap<u64, Vec<i64>>; 2],
    input_index: HashMap<u64, usize>,
    names: HashMap<u64, String>,
    used_params: Vec<usize>,
    used_set: HashSet<usize>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    memo: HashMap<String, String>,
    /// A translated tensor's dimension for each pair of traced sizes that varies: sizes
    /// are read from the tensor that has them, which stays right for any input size
    /// (a stride-2 convolution's ceil(H/2) is not H/2 when H is odd).
    dim_source: HashMap<(i64, i64), (u64, usize)>,
}

/// The ONNX graph of `traces` (same forward, sizes `spec.at`).
pub fn translate(traces: &[Trace; 2], spec: &GraphSpec) -> anyhow::Result<GraphProto> {
    let (g, g1) = (&traces[0].graph, &traces[1].graph);
    let mut t = Translator {
        g,
        g1,
        spec,
        constants: &traces[0].constants,
        twin: HashMap::new(),
        consts: [g.constants(), g1.constants()],
        lists: HashMap::new(),
        sizes: [sizes_of(g), sizes_of(g1)],
        input_index: g.inputs.iter().enumerate().map(|(i, v)| (v.id, i)).collect(),
        names: HashMap::new(),
        used_params: Vec::new(),
        used_set: HashSet::new(),
        nodes: Vec::new(),
        initializers: Vec::new(),
        memo: HashMap::new(),
        dim_source: HashMap::new(),
    };
    t.align()?;
    t.note_dims(g.inputs[0].id);
    for n in &g.nodes {
        t.node(n).with_context(|| format!("translating {} to ONNX", n.kind))?;
        for o in &n.outputs {
            t.note_dims(o.id);
        }
    }
    t.finish()
}

fn sizes_of(g: &Graph) -> HashMap<u64, Vec<i64>> {
    let values = g.inputs.iter().chain(g.nodes.iter().flat_map(|n| n.outputs.iter()));
    values.filter_map(|v| Some((v.id, v.sizes.clone()?))).collect()
}

fn float_tensor(name: &str, t: &Tensor) -> anyhow::Result<TensorProto> {
    let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
    let n = t.numel();
    let mut data = vec![0f32; n];
    t.f_copy_data(&mut data, n)?;
    Ok(TensorProto {
        dims: t.size(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}

fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: data_type::INT64,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    }
}

fn dimension(s: &SymInt) -> Dimension {
    Dimension {
        value: Some(match s {
            SymInt::Fixed(v) => DimValue::DimValue(*v),
            SymInt::Expr(e) => DimValue::DimParam(e.to_string()),
        }),
    }
}

impl<'a> Translator<'a> {
    /// Pairs the two traces' values; they must run the same ops in the same order.
    fn align(&mut self) -> anyhow::Result<()> {
        let (g, g1) = (self.g, self.g1);
        let same_shape = g.nodes.len() == g1.nodes.len() && g.inputs.len() == g1.inputs.len();
        ensure!(same_shape, "the traced graph changes with the input size; export with a fixed --input-size");
        for (a, b) in g.inputs.iter().zip(&g1.inputs) {
            self.twin.insert(a.id, b.id);
        }
        for (a, b) in g.nodes.iter().zip(&g1.nodes) {
            if a.kind != b.kind || a.outputs.len() != b.outputs.len() || a.inputs.len() != b.inputs.len() {
                bail!(
                    "the traced graph changes with the input size ({} vs {}); export with a fixed --input-size",
                    a.kind,
                    b.kind
                );
            }
            for (x, y) in a.outputs.iter().zip(&b.outputs) {
                self.twin.insert(x.id, y.id);
            }
            if a.kind == "prim::ListConstruct" {
                self.lists.insert(a.outputs[0].id, a.inputs.clone());
            }
        }
        Ok(())
    }

    fn constant(&self, id: u64) -> Option<&'a Constant> {
        self.consts[0].get(&id).copied()
    }

    fn twin_constant(&self, id: u64) -> Option<&'a Constant> {
        self.twin.get(&id).and_then(|t| self.consts[1].get(t).copied())
    }

    fn sizes(&self, id: u64) -> anyhow::Result<&Vec<i64>> {
        self.sizes[0].get(&id).context("a tensor of unknown shape")
    }

    fn sym_int(&self, id: u64) -> anyhow::Result<SymInt> {
        match (self.constant(id), self.twin_constant(id)) {
            (Some(Constant::Int(a)), Some(Constant::Int(b))) => solve([*a, *b], &self.spec.at)
                .with_context(|| format!("an integer ({a} and {b} at two input sizes) depends on the input size in a way ONNX cannot express here; export with a fixed --input-size")),
            _ => bail!("expected an integer constant"),
        }
    }

    fn int(&self, id: u64) -> anyhow::Result<i64> {
        self.sym_int(id)?
            .fixed()
            .context("an integer that must not depend on the input size does; export with a fixed --input-size")
    }

    fn float(&self, id: u64) -> anyhow::Result<f64> {
        match self.constant(id) {
            Some(Constant::Float(v)) => Constant::as_f64(v).context("a float constant"),
            Some(Constant::Int(v)) => Ok(*v as f64),
            _ => bail!("expected a number"),
        }
    }

    fn bool(&self, id: u64) -> anyhow::Result<bool> {
        match self.constant(id) {
            Some(Constant::Bool(b)) => Ok(*b),
            _ => bail!("expected a boolean"),
        }
    }

    fn is_none(&self, id: u64) -> bool {
        matches!(self.constant(id), Some(Constant::None(_)))
    }

    /// An int list argument, element by element.
    fn sym_ints(&self, id: u64) -> anyhow::Result<Vec<SymInt>> {
        if let Some(items) = self.lists.get(&id) {
            return items.iter().map(|&i| self.sym_int(i)).collect();
        }
        match (self.constant(id), self.twin_constant(id)) {
            (Some(Constant::Ints(a)), Some(Constant::Ints(b))) if a.len() == b.len() => a
                .iter()
                .zip(b)
                .map(|(x, y)| solve([*x, *y], &self.spec.at).context("a size list that depends on the input size"))
                .collect(),
            _ => bail!("expected a list of integers"),
        }
    }

    /// A 2-D window argument (kernel, stride, padding, dilation); one value means both sides.
    fn pair(&self, id: u64) -> anyhow::Result<Vec<i64>> {
        let v = self.ints(id)?;
        Ok(if v.len() == 1 { vec![v[0], v[0]] } else { v })
    }

    /// A pooling stride; none given means the window's size, as in PyTorch.
    fn pool_stride(&self, stride: u64, kernel: u64) -> anyhow::Result<Vec<i64>> {
        let s = self.pair(stride)?;
        if s.is_empty() {
            self.pair(kernel)
        } else {
            Ok(s)
        }
    }

    fn ints(&self, id: u64) -> anyhow::Result<Vec<i64>> {
        self.sym_ints(id)?
            .iter()
            .map(|s| {
                s.fixed()
                    .context("a kernel, stride or padding depends on the input size; export with a fixed --input-size")
            })
            .collect()
    }

    fn opt_floats(&self, ids: &[u64]) -> anyhow::Result<Option<Vec<f64>>> {
        if ids.iter().all(|&i| self.is_none(i)) {
            return Ok(None);
        }
        Ok(Some(ids.iter().map(|&i| self.float(i)).collect::<anyhow::Result<_>>()?))
    }

    /// The ONNX name of a tensor operand; scalars become initializers.
    fn tensor(&mut self, id: u64) -> anyhow::Result<String> {
        if let Some(n) = self.names.get(&id) {
            return Ok(n.clone());
        }
        if let Some(&i) = self.input_index.get(&id) {
            let name = self.spec.input_names[i].clone();
            if i > 0 && self.used_set.insert(i) {
                self.used_params.push(i);
            }
            self.names.insert(id, name.clone());
            return Ok(name);
        }
        let name = format!("const_{id}");
        let t = match self.constant(id) {
            Some(Constant::Tensor(k)) => float_tensor(&name, &self.constants[*k])?,
            Some(Constant::Float(_) | Constant::Int(_)) => {
                let v = self.float(id)? as f32;
                TensorProto {
                    dims: vec![],
                    data_type: data_type::FLOAT,
                    name: name.clone(),
                    raw_data: v.to_le_bytes().to_vec(),
                }
            }
            _ => bail!("an operand that is neither a tensor nor a number"),
        };
        self.initializers.push(t);
        self.names.insert(id, name.clone());
        Ok(name)
    }

    fn push(&mut self, op: &str, inputs: Vec<String>, attrs: Vec<Attr>, out: String) -> String {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name,
            op_type: op.into(),
            attribute: attrs,
            domain: String::new(),
        });
        out
    }

    /// Emits `op` producing value `out`.
    fn emit(&mut self, op: &str, inputs: Vec<String>, attrs: Vec<Attr>, out: u64) {
        let name = format!("v{out}");
        self.push(op, inputs, attrs, name.clone());
        self.names.insert(out, name);
    }

    fn alias(&mut self, out: u64, input: u64) -> anyhow::Result<()> {
        let name = self.tensor(input)?;
        self.names.insert(out, name);
        Ok(())
    }

    fn const_ints(&mut self, values: &[i64]) -> String {
        let key = format!("ints{values:?}");
        if let Some(n) = self.memo.get(&key) {
            return n.clone();
        }
        let name = format!("shape_const_{}", self.memo.len());
        self.initializers.push(int64_tensor(&name, values));
        self.memo.insert(key, name.clone());
        name
    }

    fn finish(mut self) -> anyhow::Result<GraphProto> {
        let (g, g1) = (self.g, self.g1);
        ensure!(g.outputs.len() == self.spec.output_names.len(), "the forward returned {} outputs", g.outputs.len());
        let mut outputs = Vec::new();
        for ((&id, &id1), name) in g.outputs.iter().zip(&g1.outputs).zip(self.spec.output_names) {
            let src = self.tensor(id)?;
            self.push("Identity", vec![src], vec![], name.clone());
            let (a, b) = (self.sizes(id)?.clone(), self.sizes[1].get(&id1).context("output shape")?.clone());
            let dims = a
                .iter()
                .zip(&b)
                .map(|(x, y)| solve([*x, *y], &self.spec.at).map(|s| dimension(&s)).unwrap_or_default())
                .collect();
            outputs.push(value_info(name, dims));
        }
        let image_dims: Vec<Dimension> = match self.spec.fixed {
            Some((h, w)) => [
                SymInt::Expr(Expr { num: 1, den: 1, dims: vec![Dim::N] }),
                SymInt::Fixed(3),
                SymInt::Fixed(h),
                SymInt::Fixed(w),
            ]
            .iter()
            .map(dimension)
            .collect(),
            None => Dim::ALL
                .iter()
                .map(|d| SymInt::Expr(Expr { num: 1, den: 1, dims: vec![*d] }))
                .enumerate()
                .flat_map(|(k, s)| if k == 1 { vec![SymInt::Fixed(3), s] } else { vec![s] })
                .map(|s| dimension(&s))
                .collect(),
        };
        let mut initializers = Vec::new();
        for &k in &self.used_params {
            initializers.push(float_tensor(&self.spec.input_names[k], &self.spec.params[k - 1])?);
        }
        initializers.append(&mut self.initializers);
        Ok(GraphProto {
            node: self.nodes,
            name: "segzoo".into(),
            initializer: initializers,
            doc_string: String::new(),
            input: vec![value_info(&self.spec.input_names[0], image_dims)],
            output: outputs,
            value_info: Vec::new(),
        })
    }
}
