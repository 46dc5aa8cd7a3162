//! The ATen graph of a forward pass, recorded by libtorch's tracer (csrc/trace.cpp) and
//! read back as typed nodes: what the ONNX exporter translates and the BatchNorm folding
//! pass searches for convolution → BatchNorm pairs.
use anyhow::{bail, Context};
use serde::Deserialize;
use std::ffi::{c_char, c_int, c_void, CStr};
use tch::Tensor;

type TraceFn = extern "C" fn(user: *mut c_void, inputs: *const *mut c_void, n: i64, sink: *mut c_void) -> c_int;

extern "C" {
    fn segzoo_trace(
        inputs: *const *mut c_void,
        n: i64,
        f: TraceFn,
        user: *mut c_void,
        constants: *mut *mut *mut c_void,
        n_constants: *mut i64,
        error: *mut *mut c_char,
    ) -> *mut c_char;
    fn segzoo_trace_sink_push(sink: *mut c_void, t: *mut c_void);
    fn segzoo_trace_free(p: *mut c_void);
}

/// A value of the graph: its id and, for tensors, the traced shape and dtype.
#[derive(Debug, Clone, Deserialize)]
pub struct ValueInfo {
    pub id: u64,
    #[serde(rename = "type")]
    pub ty: String,
    pub sizes: Option<Vec<i64>>,
    pub dtype: Option<String>,
}

/// A constant's value (`prim::Constant`); tensors index [`Trace::constants`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Constant {
    None(Option<()>),
    Bool(bool),
    Int(i64),
    Float(serde_json::Value),
    Ints(Vec<i64>),
    Floats(Vec<serde_json::Value>),
    Bools(Vec<bool>),
    String(String),
    Tensor(usize),
    Device(String),
    Other(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    /// `aten::conv2d`, `prim::Constant`, `prim::ListConstruct`, …
    pub kind: String,
    pub inputs: Vec<u64>,
    pub outputs: Vec<ValueInfo>,
    pub value: Option<Constant>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Graph {
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<u64>,
    pub nodes: Vec<Node>,
}

/// A traced forward: the graph (inputs in the order given) and its baked-in tensors.
pub struct Trace {
    pub graph: Graph,
    pub constants: Vec<Tensor>,
}

impl Constant {
    /// A float constant (the shim writes non-finite ones as strings).
    pub fn as_f64(v: &serde_json::Value) -> Option<f64> {
        match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => match s.as_str() {
                "nan" => Some(f64::NAN),
                "inf" => Some(f64::INFINITY),
                "-inf" => Some(f64::NEG_INFINITY),
                _ => None,
            },
            _ => None,
        }
    }
}

struct Callback<'a> {
    forward: &'a mut dyn FnMut(&[Tensor]) -> anyhow::Result<Vec<Tensor>>,
    error: Option<anyhow::Error>,
}

extern "C" fn run_forward(user: *mut c_void, inputs: *const *mut c_void, n: i64, sink: *mut c_void) -> c_int {
    // SAFETY: `user` is the Callback that `trace` passed and keeps alive for the call.
    let cb = unsafe { &mut *(user as *mut Callback) };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the shim passes `n` live at::Tensor pointers (the graph inputs).
        let tensors: Vec<Tensor> =
            (0..n as usize).map(|i| unsafe { Tensor::clone_from_ptr(*inputs.add(i) as *mut _) }).collect();
        (cb.forward)(&tensors)
    }));
    match outcome {
        Ok(Ok(outs)) => {
            for t in &outs {
                // SAFETY: `sink` is the shim's output stack; it copies the tensor handle.
                unsafe { segzoo_trace_sink_push(sink, t.as_ptr() as *mut c_void) };
            }
            0
        }
        Ok(Err(e)) => {
            cb.error = Some(e);
            1
        }
        Err(_) => {
            cb.error = Some(anyhow::anyhow!("the forward panicked while being traced"));
            1
        }
    }
}

/// Traces `forward` on `inputs`: tensors the forward reads that are among `inputs`
/// (parameters passed by identity) become graph inputs, others are baked in as constants.
pub fn trace(
    inputs: &[Tensor],
    forward: &mut dyn FnMut(&[Tensor]) -> anyhow::Result<Vec<Tensor>>,
) -> anyhow::Result<Trace> {
    let ptrs: Vec<*mut c_void> = inputs.iter().map(|t| t.as_ptr() as *mut c_void).collect();
    let mut cb = Callback { forward, error: None };
    let mut consts: *mut *mut c_void = std::ptr::null_mut();
    let mut n_consts = 0i64;
    let mut err: *mut c_char = std::ptr::null_mut();
    // SAFETY: pointers to live tensors; the shim owns nothing of ours after returning.
    let json = unsafe {
        segzoo_trace(
            ptrs.as_ptr(),
            ptrs.len() as i64,
            run_forward,
            &mut cb as *mut Callback as *mut c_void,
            &mut consts,
            &mut n_consts,
            &mut err,
        )
    };
    // SAFETY: the shim returns malloc'd C strings and an array of new tensors we now own.
    let take = |p: *mut c_char| -> Option<String> {
        (!p.is_null()).then(|| unsafe {
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            segzoo_trace_free(p as *mut c_void);
            s
        })
    };
    let constants: Vec<Tensor> =
        (0..n_consts as usize).map(|i| unsafe { Tensor::from_ptr(*consts.add(i) as *mut _) }).collect();
    if !consts.is_null() {
        unsafe { segzoo_trace_free(consts as *mut c_void) };
    }
    let error = take(err);
    let Some(json) = take(json) else {
        if let Some(e) = cb.error {
            return Err(e.context("tracing the forward"));
        }
        bail!("tracing the forward: {}", error.unwrap_or_else(|| "unknown error".into()));
    };
    let graph: Graph = serde_json::from_str(&json).context("reading the traced graph")?;
    Ok(Trace { graph, constants })
}

impl Graph {
    /// How many node inputs (and graph outputs) read each value.
    pub fn use_counts(&self) -> std::collections::HashMap<u64, usize> {
        let mut uses = std::collections::HashMap::new();
        for id in self.nodes.iter().flat_map(|n| n.inputs.iter()).chain(self.outputs.iter()) {
            *uses.entry(*id).or_insert(0) += 1;
        }
        uses
    }

    /// Constants by the id of the value they define.
    pub fn constants(&self) -> std::collections::HashMap<u64, &Constant> {
        self.nodes
            .iter()
            .filter(|n| n.kind == "prim::Constant")
            .filter_map(|n| Some((n.outputs.first()?.id, n.value.as_ref()?)))
            .collect()
    }
}
