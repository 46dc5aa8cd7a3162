//! Models with the official PyTorch parameter names: HRNet (seg and cls) and OCRNet.
//! [`Model`] owns the variables and knows their official state-dict order.
pub mod bisenetv2;
pub mod blocks;
pub mod hrnet;
pub mod layers;
pub mod ocr;
pub mod refinenet;
pub mod registry;
pub mod resnet;
pub mod weights;

use tch::{nn, Device, Tensor};

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Segmentation,
    Classification,
}

pub(crate) enum Net {
    Hrnet(hrnet::HrnetSeg),
    Ocr(Box<ocr::OcrNet>),
    HrnetCls(hrnet::HrnetCls),
    Bisenet(Box<bisenetv2::BiSeNetV2>),
    Refine(Box<refinenet::RefineNet>),
}

/// A built network with its variables.
pub struct Model {
    pub vs: nn::VarStore,
    /// State-dict entries in official order.
    entries: Vec<layers::Entry>,
    /// Checkpoint keys under these prefixes are skipped on load (BiSeNetV2's aux
    /// heads in an inference build).
    pub ignored_on_load: Vec<String>,
    net: Net,
    pub preset: String,
    pub task: Task,
    pub num_classes: i64,
    pub align_corners: bool,
    /// Names of the forward outputs in return order (`logits` is the main one).
    pub output_names: Vec<&'static str>,
    /// Input height and width must be multiples of this (1: any size).
    pub input_multiple: i64,
}

/// One state-dict entry, as the reference manifests list them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
    /// A parameter (else a buffer).
    pub is_param: bool,
    /// Receives gradients (false for buffers and frozen BN parameters).
    pub trainable: bool,
}

impl Model {
    /// Forward pass; returns every head's output in `output_names` order.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        match &self.net {
            Net::Hrnet(m) => m.forward(x, train),
            Net::Ocr(m) => m.forward(x, train),
            Net::HrnetCls(m) => m.forward(x, train),
            Net::Bisenet(m) => m.forward(x, train),
            Net::Refine(m) => m.forward(x, train),
        }
    }

    /// Index of the main output, `logits` (last for OCRNet, first for BiSeNetV2).
    pub fn main_output_index(&self) -> usize {
        self.output_names.iter().position(|n| *n == "logits").unwrap_or(0)
    }

    /// An error naming the model when `h`×`w` is not a size it accepts.
    pub fn check_input_size(&self, h: i64, w: i64) -> anyhow::Result<()> {
        let m = self.input_multiple;
        if h % m != 0 || w % m != 0 {
            anyhow::bail!("{} needs input sides that are multiples of {m}, got {h}×{w}", self.preset);
        }
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every state-dict tensor (parameters and buffers) in official order.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        self.entries.iter().map(|e| (e.name.clone(), vars[&e.name].shallow_clone())).collect()
    }

    pub fn tensor_infos(&self) -> Vec<TensorInfo> {
        let vars = self.vs.variables();
        self.entries
            .iter()
            .map(|e| {
                let t = &vars[&e.name];
                TensorInfo { name: e.name.clone(), shape: t.size(), is_param: e.is_param, trainable: t.requires_grad() }
            })
            .collect()
    }

    /// Parameters that receive gradients, in official order.
    pub fn trainable_params(&self) -> Vec<(String, Tensor)> {
        self.state_dict().into_iter().filter(|(_, t)| t.requires_grad()).collect()
    }

    /// Number of parameter elements, trained or frozen (what PyTorch's `parameters()` counts).
    pub fn num_params(&self) -> i64 {
        self.tensor_infos().iter().filter(|t| t.is_param).map(|t| t.shape.iter().product::<i64>()).sum()
    }

    /// Number of buffer tensors (running stats and `num_batches_tracked`).
    pub fn num_buffers(&self) -> usize {
        self.tensor_infos().iter().filter(|t| !t.is_param).count()
    }
}
