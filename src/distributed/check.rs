//! `segzoo dist-check`: every collective of this job's backend on every supported kind,
//! with known values, then the all-reduce bandwidth (as nccl-tests reports it).
use super::collective::Collective;
use anyhow::bail;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub const KINDS: [Kind; 7] =
    [Kind::Float, Kind::Double, Kind::BFloat16, Kind::Half, Kind::Int64, Kind::Int, Kind::Uint8];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Bandwidth {
    pub bytes: usize,
    pub ms: f64,
    /// Bytes / time, GB/s.
    pub alg_gbps: f64,
    /// What each link carried: alg × 2(n−1)/n, GB/s.
    pub bus_gbps: f64,
}

/// Small integers: exact in every kind (u8 sums stay below 256 up to 8 ranks).
fn pattern(rank: usize, kind: Kind, device: Device) -> Tensor {
    // Built transposed so that the collectives also see a strided tensor.
    let base = Tensor::arange(15, (Kind::Int64, Device::Cpu)).remainder(5) + (rank as i64 + 1);
    base.view([5, 3]).to_kind(kind).to_device(device).transpose(0, 1)
}

fn same(a: &Tensor, b: &Tensor, what: &str) -> anyhow::Result<()> {
    let (a, b) = (a.to_kind(Kind::Double).to_device(Device::Cpu), b.to_kind(Kind::Double).to_device(Device::Cpu));
    if a.size() != b.size() || !a.equal(&b) {
        bail!(
            "{what}: got {:?}, expected {:?}",
            Vec::<f64>::try_from(a.reshape([-1]))?,
            Vec::<f64>::try_from(b.reshape([-1]))?
        );
    }
    Ok(())
}

/// Checks sum, broadcast (from the last rank) and barrier on every kind; fails naming the
/// kind and the values on a mismatch.
pub fn verify(comm: &dyn Collective, device: Device) -> anyhow::Result<()> {
    let n = comm.size();
    for kind in KINDS {
        let mut t = pattern(comm.rank(), kind, device);
        comm.all_reduce_sum(&mut t)?;
        let want = (0..n)
            .map(|r| pattern(r, Kind::Int64, Device::Cpu))
            .fold(Tensor::zeros([3, 5], (Kind::Int64, Device::Cpu)), |acc, p| acc + p);
        same(&t, &want, &format!("all-reduce sum of {kind:?} on rank {}", comm.rank()))?;
        let mut t = pattern(comm.rank(), kind, device);
        comm.broadcast(&mut t, n - 1)?;
        same(&t, &pattern(n - 1, Kind::Int64, Device::Cpu), &format!("broadcast of {kind:?} on rank {}", comm.rank()))?;
    }
    comm.barrier()
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Mean time of an f32 all-reduce of `mib` MiB over `iters` runs after one warm-up.
pub fn bandwidth(comm: &dyn Collective, device: Device, mib: f64, iters: usize) -> anyhow::Result<Bandwidth> {
    let numel = ((mib * 1024.0 * 1024.0) / 4.0).max(1.0) as i64;
    let mut t = Tensor::ones([numel], (Kind::Float, device));
    comm.all_reduce_sum(&mut t)?;
    comm.barrier()?;
    sync(device);
    let start = Instant::now();
    for _ in 0..iters.max(1) {
        comm.all_reduce_sum(&mut t)?;
    }
    sync(device);
    let secs = start.elapsed().as_secs_f64() / iters.max(1) as f64;
    let bytes = numel as usize * 4;
    let n = comm.size() as f64;
    let alg = bytes as f64 / secs / 1e9;
    Ok(Bandwidth { bytes, ms: secs * 1e3, alg_gbps: alg, bus_gbps: alg * 2.0 * (n - 1.0) / n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::collective::Single;

    #[test]
    fn alone_every_kind_passes_and_a_wrong_sum_is_caught() {
        verify(&Single, Device::Cpu).expect("single world");
        let e = same(&Tensor::from_slice(&[1i64, 2]), &Tensor::from_slice(&[1i64, 3]), "x").expect_err("differs");
        assert!(e.to_string().contains("got [1.0, 2.0], expected [1.0, 3.0]"), "{e}");
        let b = bandwidth(&Single, Device::Cpu, 0.01, 2).expect("bandwidth");
        assert_eq!((b.bytes, b.bus_gbps), (10484, 0.0));
    }
}
