//! The translation of each supported ATen op ([`super::SUPPORTED`]) into one or a few
//! ONNX nodes: convolutions, norms, activations, arithmetic, resizing, pooling, shapes.
use super::super::onnx_proto::{data_type, AttributeProto as Attr, TensorProto};
use super::super::trace::{Constant, Node};
use super::{Translator, SUPPORTED};
use anyhow::{bail, ensure, Context};

impl<'a> Translator<'a> {
    pub(super) fn node(&mut self, n: &'a Node) -> anyhow::Result<()> {
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
    pub(super) fn resize(&mut self, n: &Node) -> anyhow::Result<()> {
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
    pub(super) fn traced_ints(&self, id: u64, k: usize) -> Option<Vec<i64>> {
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
    pub(super) fn avg_pool(&mut self, n: &Node) -> anyhow::Result<()> {
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
}
