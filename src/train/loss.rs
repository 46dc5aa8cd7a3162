//! Segmentation losses: cross-entropy with ignore label and class weights, OHEM as
//! the official HRNet code does it, logits upsampled to the label size, and
//! per-head weights for multi-output models.
use crate::models::layers::resize_bilinear;
use tch::{Kind, Reduction, Tensor};

/// Online hard example mining: keep pixels whose probability of the true class is
/// below `thresh`, but at least `min_kept` of them (the hardest).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ohem {
    pub thresh: f64,
    pub min_kept: i64,
}

pub struct SegLoss {
    pub ignore: i64,
    pub class_weights: Option<Tensor>,
    pub ohem: Option<Ohem>,
    /// One weight per model output, in output order.
    pub head_weights: Vec<f64>,
    pub align_corners: bool,
}

impl SegLoss {
    /// Loss of one head's logits (N×C×h×w) against labels (N×H×W).
    pub fn head(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        let (h, w) = (labels.size()[1], labels.size()[2]);
        let logits = resize_bilinear(logits, h, w, self.align_corners);
        let weight = self.class_weights.as_ref().map(|t| t.to_device(logits.device()));
        match self.ohem {
            None => logits.cross_entropy_loss(labels, weight.as_ref(), Reduction::Mean, self.ignore, 0.0),
            Some(o) => self.ohem_loss(&logits, labels, weight.as_ref(), o),
        }
    }

    fn ohem_loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>, o: Ohem) -> Tensor {
        let pixel = logits.cross_entropy_loss(labels, weight, Reduction::None, self.ignore, 0.0).flatten(0, -1);
        let valid = labels.ne(self.ignore).flatten(0, -1);
        let safe = labels.where_scalarother(&labels.ne(self.ignore), 0);
        let prob = tch::no_grad(|| logits.softmax(1, Kind::Float).gather(1, &safe.unsqueeze(1), false).flatten(0, -1));
        let prob = prob.masked_select(&valid);
        let pixel = pixel.masked_select(&valid);
        if prob.numel() == 0 {
            return pixel.sum(Kind::Float) * 0.0;
        }
        let (sorted, order) = prob.sort(0, false);
        let k = o.min_kept.min(sorted.size()[0] - 1).max(0);
        let threshold = sorted.double_value(&[k]).max(o.thresh);
        let pixel = pixel.index_select(0, &order);
        let keep = sorted.lt(threshold);
        let kept = pixel.masked_select(&keep);
        if kept.numel() == 0 {
            return pixel.sum(Kind::Float) * 0.0;
        }
        kept.mean(Kind::Float)
    }

    /// Weighted sum over the model's outputs. Summed from the first head's term, not from a
    /// zero tensor: the same value (0 + x = x) without a tensor and an addition per step.
    pub fn total(&self, outputs: &[Tensor], labels: &Tensor) -> Tensor {
        self.total_and_heads(outputs, labels).0
    }

    /// The total, and each weighted head's own loss when there are several (for the
    /// log; the total is the same sum either way).
    pub fn total_and_heads(&self, outputs: &[Tensor], labels: &Tensor) -> (Tensor, Vec<Tensor>) {
        let heads: Vec<(Tensor, f64)> = outputs
            .iter()
            .zip(&self.head_weights)
            .filter(|(_, &w)| w != 0.0)
            .map(|(o, &w)| (self.head(o, labels), w))
            .collect();
        let total = heads
            .iter()
            .map(|(l, w)| l * *w)
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::zeros([], (Kind::Float, labels.device())));
        let own = if heads.len() > 1 { heads.into_iter().map(|(l, _)| l).collect() } else { Vec::new() };
        (total, own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(ohem: Option<Ohem>, weights: Option<Tensor>) -> SegLoss {
        SegLoss { ignore: 255, class_weights: weights, ohem, head_weights: vec![1.0], align_corners: false }
    }

    /// Two classes, three pixels: logits give p(true) = 0.5, e/(1+e), 1/(1+e).
    fn case() -> (Tensor, Tensor) {
        let logits = Tensor::from_slice(&[0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]).view([1, 2, 1, 4]);
        let labels = Tensor::from_slice(&[0i64, 0, 0, 255]).view([1, 1, 4]);
        (logits, labels)
    }

    #[test]
    fn cross_entropy_ignores_and_weights() {
        let (logits, labels) = case();
        let e = std::f64::consts::E;
        let l = [-(0.5f64).ln(), -(e / (1.0 + e)).ln(), -(1.0 / (1.0 + e)).ln()];
        let got = loss(None, None).head(&logits, &labels).double_value(&[]);
        assert!((got - l.iter().sum::<f64>() / 3.0).abs() < 1e-6, "{got}");
        // Class weights: a weighted mean over non-ignored pixels (all class 0 here).
        let labels2 = Tensor::from_slice(&[0i64, 1, 0, 255]).view([1, 1, 4]);
        let w = Tensor::from_slice(&[1.0f32, 3.0]);
        let got = loss(None, Some(w)).head(&logits, &labels2).double_value(&[]);
        let l1 = -(1.0 / (1.0 + e)).ln(); // pixel 1 has p(class 1) = 1/(1+e)
        let want = (l[0] + 3.0 * l1 + l[2]) / 5.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn ohem_keeps_the_hardest_pixels() {
        let (logits, labels) = case();
        let e = std::f64::consts::E;
        // thresh 0.6: p = 0.5 and 0.269 are below, 0.731 is not → mean of those two losses.
        let got = loss(Some(Ohem { thresh: 0.6, min_kept: 1 }), None).head(&logits, &labels).double_value(&[]);
        let want = (-(0.5f64).ln() - (1.0 / (1.0 + e)).ln()) / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // A low threshold still keeps min_kept + ... pixels below the min_kept-th probability.
        let got = loss(Some(Ohem { thresh: 0.1, min_kept: 1 }), None).head(&logits, &labels).double_value(&[]);
        assert!((got - -(1.0 / (1.0 + e)).ln()).abs() < 1e-6, "only the hardest: {got}");
    }

    #[test]
    fn logits_are_upsampled_and_heads_weighted() {
        let logits = Tensor::zeros([1, 3, 2, 2], (Kind::Float, tch::Device::Cpu));
        let labels = Tensor::zeros([1, 8, 8], (Kind::Int64, tch::Device::Cpu));
        let mut l = loss(None, None);
        l.head_weights = vec![0.4, 1.0];
        let got = l.total(&[logits.shallow_clone(), logits], &labels).double_value(&[]);
        assert!((got - 1.4 * 3f64.ln()).abs() < 1e-6, "{got}");
    }
}
