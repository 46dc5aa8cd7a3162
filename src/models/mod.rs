//! Models with the official PyTorch parameter names: HRNet (seg and cls) and OCRNet.
//! [`Model`] owns the variables and knows their official state-dict order.
pub mod hrnet;
pub mod layers;
pub mod ocr;
pub mod registry;
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
}

/// A built network with its variables.
pub struct Model {
    pub vs: nn::VarStore,
    /// State-dict names in official order.
    names: Vec<String>,
    net: Net,
    pub preset: String,
    pub task: Task,
    pub num_classes: i64,
    pub align_corners: bool,
    /// Names of the forward outputs in return order (`logits` is the main one).
    pub output_names: Vec<&'static str>,
}

/// One state-dict entry, as the reference manifests list them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<i64>,
    pub trainable: bool,
}

impl Model {
    /// Forward pass; returns every head's output in `output_names` order.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        match &self.net {
            Net::Hrnet(m) => m.forward(x, train),
            Net::Ocr(m) => m.forward(x, train),
            Net::HrnetCls(m) => m.forward(x, train),
        }
    }

    /// The main output (the last head: `out` for OCRNet, the only one otherwise).
    pub fn main_output_index(&self) -> usize {
        self.output_names
            .iter()
            .position(|n| *n == "logits")
            .unwrap_or(0)
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Every state-dict tensor (parameters and buffers) in official order.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let vars = self.vs.variables();
        self.names
            .iter()
            .map(|n| (n.clone(), vars[n].shallow_clone()))
            .collect()
    }

    pub fn tensor_infos(&self) -> Vec<TensorInfo> {
        self.state_dict()
            .into_iter()
            .map(|(name, t)| TensorInfo {
                name,
                shape: t.size(),
                trainable: t.requires_grad(),
            })
            .collect()
    }

    /// Number of trainable parameter elements (what PyTorch's `parameters()` counts).
    pub fn num_params(&self) -> i64 {
        self.state_dict()
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(_, t)| t.numel() as i64)
            .sum()
    }

    /// Number of buffer tensors (running stats and `num_batches_tracked`).
    pub fn num_buffers(&self) -> usize {
        self.state_dict()
            .iter()
            .filter(|(_, t)| !t.requires_grad())
            .count()
    }
}
