//! Gathering each rank's bytes on rank 0 over the job's collective (for the merged
//! trace): the lengths in one all-gather, then every rank's bytes, padded to the longest,
//! in another.
use super::collective::Collective;
use tch::{Device, Kind, Tensor};

/// On rank 0, every rank's `bytes` in rank order; `None` elsewhere. Every rank calls it.
pub fn gather_bytes(comm: &dyn Collective, bytes: &[u8], device: Device) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
    let (rank, size) = (comm.rank(), comm.size());
    if size == 1 {
        return Ok(Some(vec![bytes.to_vec()]));
    }
    let lengths = comm.all_gather(&Tensor::from_slice(&[bytes.len() as i64]).to_device(device))?;
    let lengths = Vec::<i64>::try_from(lengths.to_device(Device::Cpu).reshape([-1]))?;
    let longest = lengths.iter().copied().max().unwrap_or(0).max(1);
    let padded = Tensor::zeros([longest], (Kind::Uint8, Device::Cpu));
    if !bytes.is_empty() {
        padded.narrow(0, 0, bytes.len() as i64).copy_(&Tensor::from_slice(bytes));
    }
    let all = comm.all_gather(&padded.to_device(device))?.to_device(Device::Cpu);
    if rank != 0 {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(size);
    for (from, &len) in lengths.iter().enumerate() {
        out.push(Vec::<u8>::try_from(all.get(from as i64).narrow(0, 0, len))?);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_the_gather_is_the_own_bytes() {
        let comm = crate::distributed::collective::single();
        let got = gather_bytes(comm.as_ref(), b"abc", Device::Cpu).unwrap();
        assert_eq!(got, Some(vec![b"abc".to_vec()]));
    }
}
