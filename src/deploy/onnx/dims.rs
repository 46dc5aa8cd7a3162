//! Sizes that vary with the input, as ONNX computes them: an image dimension, a traced
//! tensor's dimension read off the tensor that has it, and symbolic size expressions.
use super::super::onnx_proto::AttributeProto as Attr;
use super::super::symbolic::{Dim, Expr, SymInt};
use super::Translator;

impl Translator<'_> {
    /// A 1-element int64 tensor holding the image's dimension `d`.
    pub(super) fn image_dim(&mut self, d: Dim) -> String {
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
    pub(super) fn note_dims(&mut self, id: u64) {
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
    pub(super) fn dim_of(&mut self, id: u64, axis: usize) -> anyhow::Result<String> {
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
    pub(super) fn sym_size(&mut self, e: &Expr) -> anyhow::Result<String> {
        let pair = (e.eval(&self.spec.at[0]), e.eval(&self.spec.at[1]));
        if let (Some(a), Some(b)) = pair {
            if let Some(&(id, axis)) = self.dim_source.get(&(a, b)) {
                return self.dim_of(id, axis);
            }
        }
        Ok(self.expr(e))
    }

    /// A 1-element int64 tensor computing `e` from the image's shape.
    pub(super) fn expr(&mut self, e: &Expr) -> String {
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
    pub(super) fn int_list(&mut self, values: &[SymInt]) -> anyhow::Result<String> {
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
}
