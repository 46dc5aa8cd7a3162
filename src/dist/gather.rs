//! Gathering each rank's bytes on rank 0 over the job's collective (for the merged
//! trace): the lengths in one all-reduce, then each rank's bytes broadcast from it.
//! Collectives are all the backends have; a trace is gathered once, so n broadcasts
//! are cheap enough.
use super::collective::Collective;
use tch::{Device, Kind, Tensor};

/// On rank 0, every rank's `bytes` in rank order; `None` elsewhere. Every rank calls it.
pub fn gather_bytes(comm: &dyn Collective, bytes: &[u8], device: Device) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
    let (rank, size) = (comm.rank(), comm.size());
    if size == 1 {
        return Ok(Some(vec![bytes.to_vec()]));
    }
    let mut lengths = vec![0i64; size];
    lengths[rank] = bytes.len() as i64;
    let mut lengths_t = Tensor::from_slice(&lengths).to_device(device);
    comm.all_reduce_sum(&mut lengths_t)?;
    let lengths = Vec::<i64>::try_from(lengths_t.to_device(Device::Cpu))?;
    let mut all = Vec::with_capacity(size);
    for (from, &len) in lengths.iter().enumerate() {
        let mut t = if from == rank {
            Tensor::from_slice(bytes).to_device(device)
        } else {
            Tensor::zeros([len], (Kind::Uint8, device))
        };
        if len > 0 {
            comm.broadcast(&mut t, from)?;
        }
        if rank == 0 {
            all.push(Vec::<u8>::try_from(t.to_device(Device::Cpu))?);
        }
    }
    Ok((rank == 0).then_some(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_the_gather_is_the_own_bytes() {
        let comm = crate::dist::collective::single();
        let got = gather_bytes(comm.as_ref(), b"abc", Device::Cpu).unwrap();
        assert_eq!(got, Some(vec![b"abc".to_vec()]));
    }
}
