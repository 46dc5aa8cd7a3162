//! How a bucket of gradients crosses the wire (`dist.compression`), as PyTorch DDP's
//! communication hooks: as it is (averaged after the sum), cast to fp16/bf16 (divided by
//! the world size, summed, cast back: `fp16_compress_hook`, `bf16_compress_hook`), or as
//! PowerSGD's low-rank factors (`powersgd.rs`). One codec serves the overlapped reducer and
//! the after-backward path alike; nothing but gradients goes through it (SyncBN statistics,
//! BN running statistics, losses stay exact).
use tch::{Kind, Tensor};

/// A bucket's way over the wire: encoded, summed over the ranks in one round or two,
/// decoded into the averaged gradients.
pub trait Codec {
    /// What bucket `b` sends in the first round, from its gradients (the bucket's tensors
    /// in order).
    fn encode(&mut self, b: usize, grads: &[Tensor]) -> Tensor;
    /// The first round's sum: either the averaged gradients are written into `grads`
    /// (`None`), or this is what the second round sends.
    fn first(&mut self, b: usize, sum: Tensor, grads: &mut [Tensor]) -> Option<Tensor>;
    /// The second round's sum: the averaged gradients, written into `grads`.
    fn second(&mut self, _b: usize, _sum: Tensor, _grads: &mut [Tensor]) {}
    /// After the optimiser step; `applied` is false when fp16 overflow skipped it.
    fn end_step(&mut self, _applied: bool) {}
    /// This rank's state, for its checkpoint (empty: a codec without state).
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Restore [`Codec::state`]; `Err` names what does not fit (the state then starts afresh).
    fn load_state(&mut self, _tensors: &[(String, Tensor)], _step: u64) -> anyhow::Result<()> {
        Ok(())
    }
    /// The steps done, from a checkpoint (PowerSGD's start step counts them).
    fn set_step(&mut self, _step: u64) {}
    /// Bytes per element of `kind` as sent, for sizing buckets (PowerSGD's varies with the
    /// shapes; its buckets are sized as uncompressed).
    fn wire_size(&self, kind: Kind) -> usize {
        kind.elt_size_in_bytes()
    }
}

/// The bucket's tensors flattened into one.
pub fn pack(grads: &[Tensor]) -> Tensor {
    let parts: Vec<Tensor> = grads.iter().map(|t| t.reshape([-1])).collect();
    Tensor::cat(&parts, 0)
}

/// `flat` × `scale` copied back into `grads`, in order.
pub fn unpack(mut flat: Tensor, grads: &mut [Tensor], scale: f64) {
    if scale != 1.0 {
        flat *= scale;
    }
    let sizes: Vec<i64> = grads.iter().map(|t| t.numel() as i64).collect();
    for (t, piece) in grads.iter_mut().zip(flat.split_with_sizes(sizes.as_slice(), 0)) {
        let shape = t.size();
        // copy_ converts the kind in the same pass.
        tch::no_grad(|| t.copy_(&piece.view(shape.as_slice())));
    }
}

/// The sum as it is, times `scale` (1 / world size for gradients, as DDP averages).
pub struct Mean {
    pub scale: f64,
}

impl Codec for Mean {
    fn encode(&mut self, _b: usize, grads: &[Tensor]) -> Tensor {
        pack(grads)
    }
    fn first(&mut self, _b: usize, sum: Tensor, grads: &mut [Tensor]) -> Option<Tensor> {
        unpack(sum, grads, self.scale);
        None
    }
}

/// Cast to `kind` (fp16 or bf16), divided by the world size, summed, cast back.
pub struct Cast {
    pub kind: Kind,
    pub world: f64,
}

impl Codec for Cast {
    fn encode(&mut self, _b: usize, grads: &[Tensor]) -> Tensor {
        // The order of PyTorch's hooks: cast first, then divide in the narrow format.
        let mut narrow = pack(grads).to_kind(self.kind);
        narrow /= self.world;
        narrow
    }
    fn first(&mut self, _b: usize, sum: Tensor, grads: &mut [Tensor]) -> Option<Tensor> {
        unpack(sum, grads, 1.0);
        None
    }
    fn wire_size(&self, kind: Kind) -> usize {
        kind.elt_size_in_bytes().min(self.kind.elt_size_in_bytes())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tch::Device;

    /// Two ranks' buckets through a codec, the sums taken by hand.
    pub(crate) fn over_two_ranks(codecs: &mut [&mut dyn Codec; 2], grads: [&[Tensor]; 2]) -> Vec<Vec<Tensor>> {
        let mut out: Vec<Vec<Tensor>> = grads.iter().map(|g| g.iter().map(Tensor::zeros_like).collect()).collect();
        let sent: Vec<Tensor> = (0..2).map(|r| codecs[r].encode(0, grads[r])).collect();
        let sum = &sent[0] + &sent[1];
        let second: Vec<Option<Tensor>> =
            (0..2).map(|r| codecs[r].first(0, sum.shallow_clone().copy(), &mut out[r])).collect();
        if let (Some(a), Some(b)) = (&second[0], &second[1]) {
            let sum = a + b;
            for (r, o) in out.iter_mut().enumerate() {
                codecs[r].second(0, sum.copy(), o);
            }
        }
        out
    }

    fn grads(seed: i64) -> Vec<Tensor> {
        tch::manual_seed(seed);
        vec![Tensor::randn([6, 5], (Kind::Float, Device::Cpu)) * 3.0, Tensor::randn([7], (Kind::Float, Device::Cpu))]
    }

    #[test]
    fn fp16_and_bf16_give_the_mean_within_the_formats_rounding() {
        let (a, b) = (grads(1), grads(2));
        let mean: Vec<Tensor> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
        // A relative rounding of 2^-11 (fp16) or 2^-8 (bf16) at the cast of each addend, at
        // the division and at the sum: within four of those of |x| + |y| per element.
        for (kind, unit) in [(Kind::Half, 2f64.powi(-11)), (Kind::BFloat16, 2f64.powi(-8))] {
            let (mut c0, mut c1) = (Cast { kind, world: 2.0 }, Cast { kind, world: 2.0 });
            let out = over_two_ranks(&mut [&mut c0, &mut c1], [&a, &b]);
            for t in 0..2 {
                let bound = (a[t].abs() + b[t].abs()) * (4.0 * unit);
                let err = (&out[0][t] - &mean[t]).abs();
                assert_eq!(out[0][t].kind(), Kind::Float);
                assert!(bool::try_from(err.le_tensor(&bound).all()).expect("bool"), "{kind:?}, tensor {t}");
                assert!(err.max().double_value(&[]) > 0.0, "{kind:?}: the format did round");
                assert!(out[0][t].equal(&out[1][t]), "every rank decodes the same gradients");
            }
        }
        // And uncompressed: the mean itself.
        let (mut m0, mut m1) = (Mean { scale: 0.5 }, Mean { scale: 0.5 });
        let out = over_two_ranks(&mut [&mut m0, &mut m1], [&a, &b]);
        assert!(out[0][0].allclose(&mean[0], 1e-6, 1e-6, false));
    }
}
