//! One evaluation pass over a dataset: a confusion matrix (segmentation, with the
//! inference modes of `[eval]`) or top-1/top-5 counts (classification), accumulated on
//! the model's device.
use super::inference::{self, InferenceOptions};
use super::metrics::{ConfusionMatrix, TopK};
use super::score::Score;
use crate::data::dataset::Dataset;
use crate::data::loader::{self, LoaderOptions};
use crate::models::{Model, Task};
use std::sync::Arc;

/// What one evaluation pass accumulated.
pub enum Tally {
    Seg(ConfusionMatrix),
    Cls(TopK),
}

impl Tally {
    /// Sum the tallies of all ranks (each evaluated a disjoint shard) into every rank's.
    pub fn all_reduce(&mut self, comm: &dyn crate::distributed::Collective, device: tch::Device) -> anyhow::Result<()> {
        if comm.size() == 1 {
            return Ok(());
        }
        crate::distributed::watchdog::within("evaluation tally sum", || match self {
            Tally::Seg(cm) => comm.all_reduce_sum(&mut cm.matrix),
            Tally::Cls(k) => {
                let mut t = tch::Tensor::from_slice(&[k.top1_correct, k.top5_correct, k.images]).to_device(device);
                comm.all_reduce_sum(&mut t)?;
                (k.top1_correct, k.top5_correct, k.images) =
                    (t.int64_value(&[0]), t.int64_value(&[1]), t.int64_value(&[2]));
                Ok(())
            }
        })
    }

    /// The scores, with `class_names` for the per-class table.
    pub fn score(&self, class_names: &[String]) -> Score {
        match self {
            Tally::Seg(cm) => Score::Seg(cm.summary(class_names)),
            Tally::Cls(k) => Score::Cls(k.score()),
        }
    }
}

/// Evaluate `model` (eval mode) on `indices` of `ds` with `modes` (segmentation); with
/// `progress`, a progress bar shows images/s and the time left.
pub fn run(
    model: &Model,
    ds: Arc<dyn Dataset>,
    indices: &[usize],
    opts: &LoaderOptions,
    ignore: i64,
    modes: &InferenceOptions,
    progress: bool,
) -> anyhow::Result<Tally> {
    let device = model.device();
    let mut tally = match model.task() {
        Task::Segmentation => Tally::Seg(ConfusionMatrix::new(model.num_classes, ignore, device)),
        Task::Classification => Tally::Cls(TopK::default()),
    };
    let bar = progress.then(|| crate::progress::progress(indices.len() as u64, "eval"));
    inference::check_precision(device, modes.precision)?;
    let net = |x: &tch::Tensor| modes.forward(model, x);
    for batch in loader::epoch(ds, indices, 0, opts) {
        let batch = batch?;
        let x = batch.images.to_device(device);
        let y = batch.targets.to_device(device);
        match &mut tally {
            Tally::Seg(cm) => {
                let scores = tch::no_grad(|| inference::scores(&net, &x, modes));
                cm.update_logits(&scores, &y, model.align_corners());
            }
            Tally::Cls(k) => k.update(&tch::no_grad(|| net(&x)), &y),
        }
        if let Some(b) = &bar {
            b.inc(batch.indices.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(tally)
}
