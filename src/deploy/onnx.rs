//! Translates a traced forward (two traces at different input sizes, `symbolic.rs`) into
//! an ONNX graph, opset 17: each ATen op of the small, closed set segzoo's networks use
//! maps onto one or a few ONNX nodes ([`SUPPORTED`]); any other op is an error naming it.
//! Parameters become initializers under their state-dict names.
use super::onnx_proto::{
    data_type, AttributeProto as Attr, DimValue, Dimension, GraphProto, NodeProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto,
};
use super::symbolic::{solve, Dim, Dims, Expr, SymInt};
use super::trace::{Constant, Graph, Node, Trace};
use anyhow::{bail, ensure, Context};
use std::collections::{HashMap, HashSet};
use tch::{Kind, Tensor};

pub const OPSET: i64 = 17;

/// The ATen ops the exporter translates (README: "ONNX export").
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

    /// A 1-element int64 tensor holding the image's dimension `d`.
    fn image_dim(&mut self, d: Dim) -> String {
        let key = format!("dim{d:?}");
        if let Some(n) = self.memo.get(&key) {
            return n.clone();
        }
        let shape = match self.memo.get("image_shape") {
            Some(n) => n.clone(),
            None => {
                let image = self.spec.input_names[0].clone();
                let n = self.push("Shape", vec![image], vec![], "image_shape".into());
                self.memo.insert("image_shape".into(), n.clone());
                n
            }
        };
        let (start, end) = (self.const_ints(&[d.axis()]), self.const_ints(&[d.axis() + 1]));
        let out = self.push("Slice", vec![shape, start, end], vec![], format!("image_{}", d.name()));
        self.memo.insert(key, out.clone());
        out
    }

    /// Records the varying dimensions of translated value `id` as sources of sizes.
    fn note_dims(&mut self, id: u64) {
        let twin = self.twin.get(&id).copied();
        let (Some(a), Some(b)) = (self.sizes[0].get(&id), twin.and_then(|t| self.sizes[1].get(&t))) else { return };
        if !self.names.contains_key(&id) && id != self.g.inputs[0].id {
            return;
        }
        for (axis, (x, y)) in a.iter().zip(b).enumerate() {
            if x != y {
                self.dim_source.insert((*x, *y), (id, axis));
            }
        }
    }

    /// A 1-element int64 tensor: dimension `axis` of value `id` at run time.
    fn dim_of(&mut self, id: u64, axis: usize) -> anyhow::Result<String> {
        let name = self.tensor(id)?;
        let key = format!("dim_of {name} {axis}");
        if let Some(n) = self.memo.get(&key) {
            return Ok(n.clone());
        }
        let shape_key = format!("shape_of {name}");
        let shape = match self.memo.get(&shape_key) {
            Some(s) => s.clone(),
            None => {
                let s = self.push("Shape", vec![name.clone()], vec![], format!("{name}_shape"));
                self.memo.insert(shape_key, s.clone());
                s
            }
        };
        let (start, end) = (self.const_ints(&[axis as i64]), self.const_ints(&[axis as i64 + 1]));
        let out = self.push("Slice", vec![shape, start, end], vec![], format!("{name}_dim{axis}"));
        self.memo.insert(key, out.clone());
        Ok(out)
    }

    /// A size that depends on the input: read off the tensor that has it, else computed
    /// from the image's shape.
    fn sym_size(&mut self, e: &Expr) -> anyhow::Result<String> {
        let pair = (e.eval(&self.spec.at[0]), e.eval(&self.spec.at[1]));
        if let (Some(a), Some(b)) = pair {
            if let Some(&(id, axis)) = self.dim_source.get(&(a, b)) {
                return self.dim_of(id, axis);
            }
        }
        Ok(self.expr(e))
    }

    /// A 1-element int64 tensor computing `e` from the image's shape.
    fn expr(&mut self, e: &Expr) -> String {
        let key = format!("expr{e:?}");
        if let Some(n) = self.memo.get(&key) {
            return n.clone();
        }
        let mut acc: Option<String> = None;
        for &d in &e.dims {
            let dim = self.image_dim(d);
            acc = Some(match acc {
                None => dim,
                Some(a) => {
                    let out = format!("{a}_x_{}", d.name());
                    self.push("Mul", vec![a, dim], vec![], out)
                }
            });
        }
        let mut acc = acc.unwrap_or_else(|| self.const_ints(&[1]));
        if e.num != 1 {
            let k = self.const_ints(&[e.num]);
            acc = self.push("Mul", vec![acc.clone(), k], vec![], format!("{acc}_x{}", e.num));
        }
        if e.den != 1 {
            let k = self.const_ints(&[e.den]);
            acc = self.push("Div", vec![acc.clone(), k], vec![], format!("{acc}_d{}", e.den));
        }
        self.memo.insert(key, acc.clone());
        acc
    }

    /// A 1-D int64 tensor of `values`, computed where they depend on the input size.
    fn int_list(&mut self, values: &[SymInt]) -> anyhow::Result<String> {
        if let Some(fixed) = values.iter().map(SymInt::fixed).collect::<Option<Vec<i64>>>() {
            return Ok(self.const_ints(&fixed));
        }
        let mut parts = Vec::new();
        let mut run = Vec::new();
        for v in values {
            match v {
                SymInt::Fixed(x) => run.push(*x),
                SymInt::Expr(e) => {
                    if !run.is_empty() {
                        parts.push(self.const_ints(&std::mem::take(&mut run)));
                    }
                    parts.push(self.sym_size(e)?);
                }
            }
        }
        if !run.is_empty() {
            parts.push(self.const_ints(&run));
        }
        let key = format!("list{parts:?}");
        if let Some(n) = self.memo.get(&key) {
            return Ok(n.clone());
        }
        let out = self.push("Concat", parts, vec![Attr::int("axis", 0)], format!("shape_{}", self.nodes.len()));
        self.memo.insert(key, out.clone());
        Ok(out)
    }

    fn node(&mut self, n: &'a Node) -> anyhow::Result<()> {
        let kind = n.kind.as_str();
        if matches!(kind, "prim::Constant" | "prim::ListConstruct") {
            return Ok(());
        }
        ensure!(n.outputs.len() == 1, "{kind} with {} outputs", n.outputs.len());
        let out = n.outputs[0].id;
        let i = &n.inputs;
        match kind {
            "aten::_convolution" | "aten::conv2d" => {
                let (stride, padding, dilation, groups) = if kind == "aten::conv2d" {
                    (i[3], i[4], i[5], i[6])
                } else {
                    ensure!(!self.bool(i[6])?, "transposed convolution");
                    (i[3], i[4], i[5], i[8])
                };
                let w = self.sizes(i[1])?.clone();
                let pads = self.pair(padding)?;
                let mut inputs = vec![self.tensor(i[0])?, self.tensor(i[1])?];
                if !self.is_none(i[2]) {
                    inputs.push(self.tensor(i[2])?);
                }
                let attrs = vec![
                    Attr::ints("kernel_shape", &w[2..]),
                    Attr::ints("strides", &self.pair(stride)?),
                    Attr::ints("pads", &[pads.clone(), pads].concat()),
                    Attr::ints("dilations", &self.pair(dilation)?),
                    Attr::int("group", self.int(groups)?),
                ];
                self.emit("Conv", inputs, attrs, out);
            }
            "aten::batch_norm" => {
                ensure!(!self.bool(i[5])?, "training-mode BatchNorm");
                ensure!(
                    !self.is_none(i[1]) && !self.is_none(i[3]),
                    "BatchNorm without affine parameters or statistics"
                );
                let inputs = i[..5].iter().map(|&v| self.tensor(v)).collect::<anyhow::Result<_>>()?;
                let eps = self.float(i[7])? as f32;
                self.emit("BatchNormalization", inputs, vec![Attr::float("epsilon", eps)], out);
            }
            "aten::relu" | "aten::relu_" => {
                let x = self.tensor(i[0])?;
                self.emit("Relu", vec![x], vec![], out);
            }
            "aten::sigmoid" => {
                let x = self.tensor(i[0])?;
                self.emit("Sigmoid", vec![x], vec![], out);
            }
            "aten::add" | "aten::add_" | "aten::sub" => {
                if i.len() > 2 {
                    ensure!(self.float(i[2])? == 1.0, "{kind} with alpha other than 1");
                }
                let (a, b) = (self.tensor(i[0])?, self.tensor(i[1])?);
                self.emit(if kind == "aten::sub" { "Sub" } else { "Add" }, vec![a, b], vec![], out);
            }
            "aten::mul" | "aten::div" => {
                ensure!(i.len() == 2, "{kind} with a rounding mode");
                let (a, b) = (self.tensor(i[0])?, self.tensor(i[1])?);
                self.emit(if kind == "aten::mul" { "Mul" } else { "Div" }, vec![a, b], vec![], out);
            }
            "aten::cat" => {
                let items = self.lists.get(&i[0]).cloned().context("cat of a tensor list")?;
                let inputs = items.iter().map(|&v| self.tensor(v)).collect::<anyhow::Result<_>>()?;
                let axis = self.int(i[1])?;
                self.emit("Concat", inputs, vec![Attr::int("axis", axis)], out);
            }
            "aten::upsample_bilinear2d" | "aten::upsample_nearest2d" => self.resize(n)?,
            "aten::max_pool2d" => {
                let pads = self.pair(i[3])?;
                let x = self.tensor(i[0])?;
                let attrs = vec![
                    Attr::ints("kernel_shape", &self.pair(i[1])?),
                    Attr::ints("strides", &self.pool_stride(i[2], i[1])?),
                    Attr::ints("pads", &[pads.clone(), pads].concat()),
                    Attr::ints("dilations", &self.pair(i[4])?),
                    Attr::int("ceil_mode", self.bool(i[5])? as i64),
                ];
                self.emit("MaxPool", vec![x], attrs, out);
            }
            "aten::avg_pool2d" => self.avg_pool(n)?,
            "aten::adaptive_avg_pool2d" => {
                ensure!(self.ints(i[1])? == [1, 1], "adaptive average pooling to other than 1×1");
                let x = self.tensor(i[0])?;
                self.emit("GlobalAveragePool", vec![x], vec![], out);
            }
            "aten::mean" => {
                let axes = self.ints(i[1]).context("mean over all elements")?;
                let keep = self.bool(i[2])?;
                let x = self.tensor(i[0])?;
                self.emit(
                    "ReduceMean",
                    vec![x],
                    vec![Attr::ints("axes", &axes), Attr::int("keepdims", keep as i64)],
                    out,
                );
            }
            "aten::linear" => {
                let rank = self.sizes(i[0])?.len();
                let (x, w) = (self.tensor(i[0])?, self.tensor(i[1])?);
                let mut inputs = vec![x, w];
                if !self.is_none(i[2]) {
                    inputs.push(self.tensor(i[2])?);
                }
                ensure!(rank == 2, "linear on a {rank}-D input");
                self.emit("Gemm", inputs, vec![Attr::int("transB", 1)], out);
            }
            "aten::matmul" => {
                let (a, b) = (self.tensor(i[0])?, self.tensor(i[1])?);
                self.emit("MatMul", vec![a, b], vec![], out);
            }
            "aten::softmax" => {
                let rank = self.sizes(i[0])?.len() as i64;
                let dim = self.int(i[1])?;
                let x = self.tensor(i[0])?;
                self.emit("Softmax", vec![x], vec![Attr::int("axis", dim.rem_euclid(rank))], out);
            }
            "aten::view" | "aten::reshape" => {
                let shape = self.sym_ints(i[1])?;
                let (x, s) = (self.tensor(i[0])?, self.int_list(&shape)?);
                self.emit("Reshape", vec![x, s], vec![], out);
            }
            "aten::flatten" => {
                let rank = self.sizes(i[0])?.len() as i64;
                let (start, end) = (self.int(i[1])?, self.int(i[2])?.rem_euclid(rank));
                ensure!(start == 1 && end == rank - 1, "flatten other than from dimension 1 to the last");
                let x = self.tensor(i[0])?;
                self.emit("Flatten", vec![x], vec![Attr::int("axis", 1)], out);
            }
            "aten::permute" => {
                let perm = self.ints(i[1])?;
                let x = self.tensor(i[0])?;
                self.emit("Transpose", vec![x], vec![Attr::ints("perm", &perm)], out);
            }
            "aten::transpose" => {
                let rank = self.sizes(i[0])?.len() as i64;
                let (a, b) = (self.int(i[1])?.rem_euclid(rank), self.int(i[2])?.rem_euclid(rank));
                let mut perm: Vec<i64> = (0..rank).collect();
                perm.swap(a as usize, b as usize);
                let x = self.tensor(i[0])?;
                self.emit("Transpose", vec![x], vec![Attr::ints("perm", &perm)], out);
            }
            "aten::unsqueeze" => {
                let rank = self.sizes(i[0])?.len() as i64;
                let axis = self.int(i[1])?.rem_euclid(rank + 1);
                let (x, axes) = (self.tensor(i[0])?, self.const_ints(&[axis]));
                self.emit("Unsqueeze", vec![x, axes], vec![], out);
            }
            "aten::to" => {
                // to(self, dtype, non_blocking, copy, memory_format): a float model stays float.
                let dtype = self.int(i[1]).context("aten::to other than to a dtype")?;
                ensure!(dtype == 6, "a cast to dtype {dtype} (only float32 graphs export)");
                self.alias(out, i[0])?;
            }
            "aten::contiguous" | "aten::clone" | "aten::detach" => self.alias(out, i[0])?,
            "aten::dropout" | "aten::feature_dropout" => {
                ensure!(!self.bool(i[2])?, "training-mode dropout");
                self.alias(out, i[0])?;
            }
            other => bail!(
                "the ONNX exporter does not support the op `{other}`; supported: {}",
                SUPPORTED.iter().map(|s| s.trim_start_matches("aten::")).collect::<Vec<_>>().join(", ")
            ),
        }
        Ok(())
    }

    /// Bilinear or nearest resize: fixed factors where the forward gave scales, otherwise
    /// the traced target size, computed from the image's shape when it depends on it.
    fn resize(&mut self, n: &Node) -> anyhow::Result<()> {
        let i = &n.inputs;
        let bilinear = n.kind == "aten::upsample_bilinear2d";
        let (align_corners, scale_ids) =
            if bilinear { (self.bool(i[2])?, [i[3], i[4]]) } else { (false, [i[2], i[3]]) };
        let x = self.tensor(i[0])?;
        let scales = self.opt_floats(&scale_ids)?;
        let (roi, scale_input, sizes) = match scales {
            Some(s) => {
                let name = format!("scales_{}", n.outputs[0].id);
                let data: Vec<f32> = [1.0, 1.0, s[0] as f32, s[1] as f32].to_vec();
                self.initializers.push(TensorProto {
                    dims: vec![4],
                    data_type: data_type::FLOAT,
                    name: name.clone(),
                    raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                });
                (String::new(), name, None)
            }
            None => {
                let hw = self.sym_ints(i[1])?;
                ensure!(hw.len() == 2, "a resize to {} sides", hw.len());
                let shape = self.push("Shape", vec![x.clone()], vec![], format!("shape_of_{x}_{}", self.nodes.len()));
                let (s0, s2) = (self.const_ints(&[0]), self.const_ints(&[2]));
                let nc = self.push("Slice", vec![shape, s0, s2], vec![], format!("nc_{}", n.outputs[0].id));
                let hw = self.int_list(&hw)?;
                let sizes =
                    self.push("Concat", vec![nc, hw], vec![Attr::int("axis", 0)], format!("sizes_{}", n.outputs[0].id));
                (String::new(), String::new(), Some(sizes))
            }
        };
        let mut inputs = vec![x, roi, scale_input];
        inputs.extend(sizes);
        let attrs = if bilinear {
            let mode = if align_corners { "align_corners" } else { "pytorch_half_pixel" };
            vec![Attr::string("mode", "linear"), Attr::string("coordinate_transformation_mode", mode)]
        } else {
            vec![
                Attr::string("mode", "nearest"),
                Attr::string("coordinate_transformation_mode", "asymmetric"),
                Attr::string("nearest_mode", "floor"),
            ]
        };
        self.emit("Resize", inputs, attrs, n.outputs[0].id);
        Ok(())
    }

    /// An int list as traced in trace `k` (0 or 1), with no interpretation.
    fn traced_ints(&self, id: u64, k: usize) -> Option<Vec<i64>> {
        let id = if k == 0 { id } else { *self.twin.get(&id)? };
        let lists: Vec<u64> = match self.consts[k].get(&id) {
            Some(Constant::Ints(v)) => return Some(v.clone()),
            _ if k == 0 => self.lists.get(&id)?.clone(),
            _ => self.g1.nodes.iter().find(|n| n.outputs.first().is_some_and(|o| o.id == id))?.inputs.clone(),
        };
        lists.iter().map(|i| if let Some(Constant::Int(v)) = self.consts[k].get(i) { Some(*v) } else { None }).collect()
    }

    /// Average pooling; a window over the whole map in both traces (the classifier's
    /// global pool, whose window follows the input size) is GlobalAveragePool.
    fn avg_pool(&mut self, n: &Node) -> anyhow::Result<()> {
        let i = &n.inputs;
        ensure!(self.is_none(i[6]), "average pooling with a divisor override");
        let global = (0..2).all(|k| {
            let input = if k == 0 { Some(i[0]) } else { self.twin.get(&i[0]).copied() };
            let spatial = input.and_then(|id| self.sizes[k].get(&id)).map(|s| s[2..].to_vec());
            let (kernel, pads) = (self.traced_ints(i[1], k), self.traced_ints(i[3], k));
            spatial.is_some() && spatial == kernel && pads.is_some_and(|p| p.iter().all(|&v| v == 0))
        });
        let x = self.tensor(i[0])?;
        if global {
            self.emit("GlobalAveragePool", vec![x], vec![], n.outputs[0].id);
            return Ok(());
        }
        let pads = self.pair(i[3])?;
        let attrs = vec![
            Attr::ints("kernel_shape", &self.pair(i[1])?),
            Attr::ints("strides", &self.pool_stride(i[2], i[1])?),
            Attr::ints("pads", &[pads.clone(), pads].concat()),
            Attr::int("ceil_mode", self.bool(i[4])? as i64),
            Attr::int("count_include_pad", self.bool(i[5])? as i64),
        ];
        self.emit("AveragePool", vec![x], attrs, n.outputs[0].id);
        Ok(())
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
