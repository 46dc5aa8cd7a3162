//! Evaluation over a dataset: confusion matrix (segmentation, with the inference modes
//! of `[eval]`) or top-1/top-5 (classification), accumulated on the model's device.
use super::inference::{self, Averaging, InferenceOptions, Sliding};
use super::metrics::{topk_correct, ConfusionMatrix};
use crate::config::{Config, DatasetKind};
use crate::data::dataset::Dataset;
use crate::data::labels::LIP_FLIP_PAIRS;
use crate::data::loader::{self, LoaderOptions};
use crate::models::registry::Arch;
use crate::models::{Model, Task};
use std::sync::Arc;

/// What one evaluation pass accumulated.
pub enum Tally {
    Seg(ConfusionMatrix),
    /// (top-1 correct, top-5 correct, images)
    Cls(i64, i64, i64),
}

impl Tally {
    /// Sum the tallies of all ranks (each evaluated a disjoint shard) into every rank's.
    pub fn all_reduce(&mut self, comm: &dyn crate::dist::Collective, device: tch::Device) -> anyhow::Result<()> {
        if comm.size() == 1 {
            return Ok(());
        }
        match self {
            Tally::Seg(cm) => comm.all_reduce_sum(&mut cm.matrix),
            Tally::Cls(t1, t5, n) => {
                let mut t = tch::Tensor::from_slice(&[*t1, *t5, *n]).to_device(device);
                comm.all_reduce_sum(&mut t)?;
                (*t1, *t5, *n) = (t.int64_value(&[0]), t.int64_value(&[1]), t.int64_value(&[2]));
                Ok(())
            }
        }
    }
}

/// Inference settings of the `[eval]` section for `model`.
pub fn inference_options(cfg: &Config, model: &Model) -> InferenceOptions {
    let e = &cfg.eval;
    let crop = e.crop_size.unwrap_or(cfg.data.crop_size);
    let stride = e.stride.unwrap_or([(crop[0] * 2 / 3).max(1), (crop[1] * 2 / 3).max(1)]);
    let hrnet_family =
        crate::models::registry::find_preset(&model.preset).is_ok_and(|p| matches!(p.arch, Arch::HrnetSeg | Arch::Ocr));
    let averaging = match e.averaging {
        Some(crate::config::Averaging::Probs) => Averaging::Probs,
        Some(crate::config::Averaging::ExpLogits) => Averaging::ExpLogits,
        None if hrnet_family => Averaging::ExpLogits,
        None => Averaging::Probs,
    };
    InferenceOptions {
        scales: e.scales.clone(),
        flip: e.flip,
        sliding: e.sliding.then_some(Sliding {
            crop: [crop[0] as i64, crop[1] as i64],
            stride: [stride[0] as i64, stride[1] as i64],
        }),
        averaging,
        flip_pairs: if cfg.data.dataset == DatasetKind::Lip {
            LIP_FLIP_PAIRS.iter().map(|&(a, b)| (a as i64, b as i64)).collect()
        } else {
            Vec::new()
        },
        align_corners: model.align_corners,
        input_multiple: model.input_multiple,
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
    let mut tally = match model.task {
        Task::Segmentation => Tally::Seg(ConfusionMatrix::new(model.num_classes, ignore, device)),
        Task::Classification => Tally::Cls(0, 0, 0),
    };
    let bar = progress.then(|| crate::progress::progress(indices.len() as u64, "eval"));
    let net = |x: &tch::Tensor| model.forward_t(x, false).swap_remove(model.main_output_index());
    for batch in loader::epoch(ds, indices, 0, opts) {
        let batch = batch?;
        let x = batch.images.to_device(device);
        let y = batch.targets.to_device(device);
        match &mut tally {
            Tally::Seg(cm) => {
                let scores = tch::no_grad(|| inference::scores(&net, &x, modes));
                cm.update_logits(&scores, &y, model.align_corners);
            }
            Tally::Cls(t1, t5, n) => {
                let main = tch::no_grad(|| net(&x));
                let (a, b) = topk_correct(&main, &y, 5);
                *t1 += a;
                *t5 += b;
                *n += y.size()[0];
            }
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
