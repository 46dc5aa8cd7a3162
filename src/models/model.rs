//! [`Model`]: a built network with its variables in official state-dict order, and the
//! [`Network`] trait through which each architecture describes itself.
use super::layers;
use tch::{nn, Device, Tensor};

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Segmentation,
    Classification,
}

/// The architectures segzoo implements (one file each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    HrnetV2,
    OcrNet,
    HrnetCls,
    BiSeNetV2,
    RefineNet,
}

/// How scores from several scales or flips are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Averaging {
    /// Sum of softmax probabilities (BiSeNetV2, RefineNet, mmsegmentation).
    Probs,
    /// Sum of exp(logits) (the official HRNet/OCR inference).
    ExpLogits,
}

/// An architecture's forward pass and what callers need to know about it, stated by
/// the architecture itself so that nothing looks a preset up by name to learn it.
pub trait Network {
    fn arch(&self) -> Arch;
    fn task(&self) -> Task {
        Task::Segmentation
    }
    /// Names of the forward outputs in return order (`logits` is the main one).
    fn output_names(&self) -> Vec<&'static str>;
    /// Input height and width must be multiples of this (1: any size).
    fn input_multiple(&self) -> i64 {
        1
    }
    /// Checkpoint key prefixes this build skips on load (heads a training build has
    /// and an inference build omits).
    fn skipped_on_load(&self) -> Vec<String> {
        Vec::new()
    }
    /// How multi-scale / flip scores are averaged by the reference implementation.
    fn averaging(&self) -> Averaging {
        Averaging::Probs
    }
    /// Bilinear resize convention of the outputs (and of the loss's upsampling).
    fn align_corners(&self) -> bool;
    /// Every head's output in `output_names` order.
    fn forward(&self, x: &Tensor, train: bool) -> Vec<Tensor>;
}

/// A built network with its variables.
pub struct Model {
    pub vs: nn::VarStore,
    /// State-dict entries in official order.
    pub(crate) entries: Vec<layers::Entry>,
    pub(crate) net: Box<dyn Network>,
    pub preset: String,
    pub num_classes: i64,
    /// The BatchNorm layers' shared synchronization slot.
    pub(crate) sync: super::sync_bn::SyncSlot,
    /// The deploy form's folded convolutions and BatchNorms.
    pub(crate) fusion: super::fusion::FusionSlots,
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
    ///
    /// Panics when asked to train the deploy form (BatchNorm folded away), a programming error.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        assert!(!train || !self.is_folded(), "the deploy form of {} cannot train", self.preset);
        self.net.forward(x, train)
    }

    /// The deploy form: BatchNorm folded into the convolutions (`crate::deploy::fold`).
    pub fn is_folded(&self) -> bool {
        self.fusion.folded_count() > 0
    }

    pub fn fusion(&self) -> &super::fusion::FusionSlots {
        &self.fusion
    }

    /// The main output (`logits`) alone.
    pub fn forward_main(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_t(x, train).swap_remove(self.main_output_index())
    }

    pub fn arch(&self) -> Arch {
        self.net.arch()
    }

    pub fn task(&self) -> Task {
        self.net.task()
    }

    pub fn output_names(&self) -> Vec<&'static str> {
        self.net.output_names()
    }

    pub fn input_multiple(&self) -> i64 {
        self.net.input_multiple()
    }

    pub fn skipped_on_load(&self) -> Vec<String> {
        self.net.skipped_on_load()
    }

    pub fn averaging(&self) -> Averaging {
        self.net.averaging()
    }

    pub fn align_corners(&self) -> bool {
        self.net.align_corners()
    }

    /// Index of the main output, `logits` (last for OCRNet, first for BiSeNetV2).
    pub fn main_output_index(&self) -> usize {
        self.output_names().iter().position(|n| *n == "logits").unwrap_or(0)
    }

    /// An error naming the model when `h`×`w` is not a size it accepts.
    pub fn check_input_size(&self, h: i64, w: i64) -> anyhow::Result<()> {
        let m = self.input_multiple();
        if h % m != 0 || w % m != 0 {
            anyhow::bail!("{} needs input sides that are multiples of {m}, got {h}×{w}", self.preset);
        }
        Ok(())
    }

    /// Synchronize training-mode BatchNorm over the ranks `sum` spans (SyncBatchNorm),
    /// or stop (`None`).
    pub fn set_batch_norm_group(&self, sum: Option<super::sync_bn::GroupSum>) {
        self.sync.set(sum);
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
