//! Summing many tensors over the ranks in a few large messages: consecutive tensors of
//! one kind and device are packed into flat buckets of about `bucket_bytes` (one
//! collective each, as DDP does), then unpacked.
use super::collective::Collective;
use tch::Tensor;

/// The first bucket's size, as DDP's: gradients come in reverse registration order, and a
/// small first bucket lets the all-reduce start early in backward.
pub const FIRST_BUCKET_BYTES: usize = 1 << 20;

/// Groups of consecutive indices into `tensors`, each one kind and device and closed
/// once it holds at least `bucket_bytes` (the first: at least the smaller of that and
/// [`FIRST_BUCKET_BYTES`]).
pub fn plan(tensors: &[Tensor], bucket_bytes: usize) -> Vec<Vec<usize>> {
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
        bytes += t.numel() * t.kind().elt_size_in_bytes();
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

/// The bucket's tensors (`members` of `tensors`), flattened into one new tensor.
pub fn pack(tensors: &[Tensor], members: &[usize]) -> Tensor {
    let parts: Vec<Tensor> = members.iter().map(|&i| tensors[i].reshape([-1])).collect();
    Tensor::cat(&parts, 0)
}

/// `scale` × the summed bucket `flat`, copied back into its `members` of `tensors`.
pub fn unpack(mut flat: Tensor, tensors: &mut [Tensor], members: &[usize], scale: f64) {
    if scale != 1.0 {
        flat *= scale;
    }
    let sizes: Vec<i64> = members.iter().map(|&i| tensors[i].numel() as i64).collect();
    for (&i, piece) in members.iter().zip(flat.split_with_sizes(sizes.as_slice(), 0)) {
        let t = &mut tensors[i];
        let shape = t.size();
        tch::no_grad(|| t.copy_(&piece.view(shape.as_slice())));
    }
}

/// Every tensor ← `scale` × its sum over all ranks, in the order given.
/// A bucket's all-reduce as the trace names it.
pub fn bucket_span(index: usize, flat: &Tensor) -> String {
    let mb = (flat.numel() * flat.kind().elt_size_in_bytes()) as f64 / (1024.0 * 1024.0);
    format!("all-reduce bucket {index} ({mb:.2} MB)")
}

pub fn all_reduce(
    comm: &dyn Collective,
    tensors: &mut [Tensor],
    bucket_bytes: usize,
    scale: f64,
) -> anyhow::Result<()> {
    for (i, bucket) in plan(tensors, bucket_bytes).into_iter().enumerate() {
        let mut flat = pack(tensors, &bucket);
        let start = std::time::Instant::now();
        comm.all_reduce_sum(&mut flat)?;
        if crate::timeline::active() {
            crate::timeline::record(&bucket_span(i, &flat), crate::timeline::COMM_LANE, start);
        }
        unpack(flat, tensors, &bucket, scale);
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
        assert_eq!(plan(&ts, 40), vec![vec![0, 1, 2], vec![3], vec![4], vec![5]]);
        assert_eq!(plan(&ts, 1 << 20), vec![vec![0, 1, 2, 3], vec![4], vec![5]]);
        // The first bucket closes at 1 MiB even when buckets are larger.
        let big = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let ts = [big(200_000), big(100_000), big(300_000), big(300_000)];
        assert_eq!(plan(&ts, 25 << 20), vec![vec![0, 1], vec![2, 3]]);
        assert!(plan(&[], 10).is_empty());
    }

    #[test]
    fn unpacks_into_the_original_shapes_and_scales() {
        let mut ts = vec![
            Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]),
            Tensor::from_slice(&[10f32]),
            Tensor::ones([2, 1, 2], (Kind::Float, Device::Cpu)),
        ];
        all_reduce(&Single, &mut ts, 8, 0.5).expect("single all-reduce");
        assert_eq!(ts[0].size(), [2, 3]);
        assert_eq!(Vec::<f32>::try_from(ts[0].reshape([-1])).expect("vec"), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(ts[1].double_value(&[0]), 5.0);
        assert_eq!(ts[2].size(), [2, 1, 2]);
        assert_eq!(ts[2].sum(Kind::Float).double_value(&[]), 2.0);
    }
}
