//! Summing many tensors over the ranks in a few large messages: consecutive tensors of
//! one kind and device are packed into flat buckets of about `bucket_bytes` (one
//! collective each, as DDP does), then unpacked.
use super::collective::Collective;
use super::compression::Codec;
use tch::{Kind, Tensor};

/// The first bucket's size, as DDP's: gradients come in reverse registration order, and a
/// small first bucket lets the all-reduce start early in backward.
pub const FIRST_BUCKET_BYTES: usize = 1 << 20;

/// Groups of consecutive indices into `tensors`, each one kind and device and closed
/// once it holds at least `bucket_bytes` (the first: at least the smaller of that and
/// [`FIRST_BUCKET_BYTES`]). Bytes count as sent: `wire_size` is the bytes per element of
/// a kind on the wire (bf16 compression halves fp32's, so a bucket holds twice the
/// gradients and the first bucket's early start covers twice as many).
pub fn plan(tensors: &[Tensor], bucket_bytes: usize, wire_size: &dyn Fn(Kind) -> usize) -> Vec<Vec<usize>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let same = buckets.last().and_then(|b| b.last()).is_some_and(|&j| {
            let u = &tensors[j];
            u.kind() == t.kind() && u.device() == t.device()
        });
        let cap = if buckets.len() <= 1 { bucket_bytes.min(FIRST_BUCKET_BYTES) } else { bucket_bytes };
        if !same || bytes >= cap {
            buckets.push(Vec::new());
            bytes = 0;
        }
        bytes += t.numel() * wire_size(t.kind());
        buckets.last_mut().expect("a bucket was just opened").push(i);
    }
    buckets
}

/// A parameter's gradient, or zeros where it has none: every rank must send the same
/// buckets, and a parameter without a gradient takes part as zeros.
pub fn grad_or_zeros(param: &Tensor) -> Tensor {
    let g = param.grad();
    if g.defined() {
        g
    } else {
        param.zeros_like()
    }
}

/// A bucket's all-reduce as the trace names it.
pub fn bucket_span(index: usize, flat: &Tensor) -> String {
    let mb = (flat.numel() * flat.kind().elt_size_in_bytes()) as f64 / (1024.0 * 1024.0);
    format!("all-reduce bucket {index} ({mb:.2} MB)")
}

/// Every tensor ← its sum over all ranks as `codec` averages it (gradients compressed as
/// `dist.compression` says; [`Mean`](super::compression::Mean) for exact means), bucket by
/// bucket in the order given.
pub fn all_reduce(
    comm: &dyn Collective,
    tensors: &mut [Tensor],
    bucket_bytes: usize,
    codec: &mut dyn Codec,
) -> anyhow::Result<()> {
    let buckets = plan(tensors, bucket_bytes, &|k| codec.wire_size(k));
    for (i, bucket) in buckets.into_iter().enumerate() {
        let mut members: Vec<Tensor> = bucket.iter().map(|&j| tensors[j].shallow_clone()).collect();
        let mut flat = codec.encode(i, &members);
        let start = std::time::Instant::now();
        comm.all_reduce_sum(&mut flat)?;
        if crate::timeline::active() {
            crate::timeline::record(&bucket_span(i, &flat), crate::timeline::COMM_LANE, start);
        }
        if let Some(mut next) = codec.first(i, flat, &mut members) {
            comm.all_reduce_sum(&mut next)?;
            codec.second(i, next, &mut members);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::collective::Single;
    use tch::{Device, Kind};

    #[test]
    fn buckets_close_at_the_size_and_at_a_change_of_kind() {
        let f = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let l = |n: i64| Tensor::zeros([n], (Kind::Int64, Device::Cpu));
        // 40-byte buckets: 4+4+4 floats = 48 bytes closes the first.
        let ts = [f(4), f(4), f(4), f(2), l(1), f(1)];
        let elt = |k: Kind| k.elt_size_in_bytes();
        assert_eq!(plan(&ts, 40, &elt), vec![vec![0, 1, 2], vec![3], vec![4], vec![5]]);
        assert_eq!(plan(&ts, 1 << 20, &elt), vec![vec![0, 1, 2, 3], vec![4], vec![5]]);
        // The first bucket closes at 1 MiB even when buckets are larger.
        let big = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let ts = [big(200_000), big(100_000), big(300_000), big(300_000)];
        assert_eq!(plan(&ts, 25 << 20, &elt), vec![vec![0, 1], vec![2, 3]]);
        // Sent as 2-byte halves, the first MiB holds all three of 200k+100k+300k floats.
        assert_eq!(plan(&ts, 25 << 20, &|_| 2), vec![vec![0, 1, 2], vec![3]]);
        assert!(plan(&[], 10, &elt).is_empty());
    }

    #[test]
    fn unpacks_into_the_original_shapes_and_scales() {
        let mut ts = vec![
            Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]),
            Tensor::from_slice(&[10f32]),
            Tensor::ones([2, 1, 2], (Kind::Float, Device::Cpu)),
        ];
        all_reduce(&Single, &mut ts, 8, &mut crate::distributed::compression::Mean { scale: 0.5 }).expect("single");
        assert_eq!(ts[0].size(), [2, 3]);
        assert_eq!(Vec::<f32>::try_from(ts[0].reshape([-1])).expect("vec"), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(ts[1].double_value(&[0]), 5.0);
        assert_eq!(ts[2].size(), [2, 1, 2]);
        assert_eq!(ts[2].sum(Kind::Float).double_value(&[]), 2.0);
    }
}
