//! The one device policy, used by train, eval, infer, bench and dist-check: `--device`
//! when given; else the world decides ([`World::device`]: `cuda:DEVICE_ID` under
//! segzoo-launch, the one GPU a process sees, else `cuda:LOCAL_RANK`) where CUDA is; else
//! the CPU. The GPU chosen becomes the process's current device.
use super::world::{self, World};
use tch::Device;

extern "C" {
    fn segzoo_cuda_set_current_device(index: i32) -> bool;
}

pub fn select(world: &World, requested: Option<Device>) -> anyhow::Result<Device> {
    let device = match requested {
        Some(d) => d,
        None => {
            let visible = if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 };
            world.device(visible)?
        }
    };
    if let Device::Cuda(index) = device {
        // As torch.cuda.set_device(local_rank): libtorch calls that take no device (stream
        // and allocator lookups, …) would otherwise open a context on cuda:0 in every rank.
        // SAFETY: plain FFI call; false only where CUDA is absent, which later calls report.
        let _ = unsafe { segzoo_cuda_set_current_device(index as i32) };
    }
    Ok(device)
}

/// The device of this process, from its environment (for commands that join no group).
pub fn for_this_process(requested: Option<Device>) -> anyhow::Result<Device> {
    select(&world::from_process_env()?, requested)
}

/// cuDNN autotuning (torch.backends.cudnn.benchmark) for work on `device`: on a GPU as
/// `on` says; nothing to tune on the CPU. Returns whether it is on.
pub fn cudnn_autotune(device: Device, on: bool) -> bool {
    if !device.is_cuda() {
        return false;
    }
    tch::Cuda::cudnn_set_benchmark(on);
    on
}

/// Wait for the work queued on `device` (for timings); nothing to wait for on the CPU.
pub fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}
