//! Single-scale evaluation over a dataset: confusion matrix (segmentation) or
//! top-1/top-5 (classification), accumulated on the model's device.
use super::metrics::{topk_correct, ConfusionMatrix};
use crate::data::dataset::Dataset;
use crate::data::loader::{self, LoaderOptions};
use crate::models::{Model, Task};
use std::sync::Arc;

/// What one evaluation pass accumulated.
pub enum Tally {
    Seg(ConfusionMatrix),
    /// (top-1 correct, top-5 correct, images)
    Cls(i64, i64, i64),
}

/// Evaluate `model` (eval mode) on `indices` of `ds`.
pub fn run(
    model: &Model,
    ds: Arc<dyn Dataset>,
    indices: &[usize],
    opts: &LoaderOptions,
    ignore: i64,
) -> anyhow::Result<Tally> {
    let device = model.device();
    let mut tally = match model.task {
        Task::Segmentation => Tally::Seg(ConfusionMatrix::new(model.num_classes, ignore, device)),
        Task::Classification => Tally::Cls(0, 0, 0),
    };
    for batch in loader::epoch(ds, indices, 0, opts) {
        let batch = batch?;
        let x = batch.images.to_device(device);
        let y = batch.targets.to_device(device);
        let outs = tch::no_grad(|| model.forward_t(&x, false));
        let main = &outs[model.main_output_index()];
        match &mut tally {
            Tally::Seg(cm) => cm.update_logits(main, &y, model.align_corners),
            Tally::Cls(t1, t5, n) => {
                let (a, b) = topk_correct(main, &y, 5);
                *t1 += a;
                *t5 += b;
                *n += y.size()[0];
            }
        }
    }
    Ok(tally)
}
