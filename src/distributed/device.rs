//! The one device policy, used by train, eval, infer, bench and dist-check: `--device`
//! when given; else the world decides — `cuda:DEVICE_ID` under segzoo-launch,
//! `cuda:LOCAL_RANK` under mpirun, `cuda:0` alone — where CUDA is; else the CPU.
use super::world::{self, World};
use tch::Device;

pub fn select(world: &World, requested: Option<Device>) -> anyhow::Result<Device> {
    if let Some(d) = requested {
        return Ok(d);
    }
    let visible = if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 };
    Ok(world.device(visible)?)
}

/// The device of this process, from its environment (for commands that join no group).
pub fn for_this_process(requested: Option<Device>) -> anyhow::Result<Device> {
    select(&world::from_process_env()?, requested)
}

/// Wait for the work queued on `device` (for timings); nothing to wait for on the CPU.
pub fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}
