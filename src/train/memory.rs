//! Memory figures for the step line and TensorBoard: the process's resident set (now
//! and its peak, from /proc) and, on CUDA, the caching allocator's peak allocation.
use tch::Device;

extern "C" {
    fn segzoo_cuda_peak_allocated(device: i32, bytes: *mut i64) -> bool;
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Memory {
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
    /// The peak of tensor memory allocated on the CUDA device since the start.
    pub cuda_max_allocated_mb: Option<f64>,
}

impl Memory {
    /// The figure the step line shows: the device's peak, else the process's.
    pub fn peak_mb(&self) -> f64 {
        self.cuda_max_allocated_mb.unwrap_or(self.peak_rss_mb)
    }
}

/// `VmRSS` and `VmHWM` of /proc/self/status in MB (zeros where there is no /proc).
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn sample(device: Device) -> Memory {
    let (rss_mb, peak_rss_mb) = rss();
    let cuda_max_allocated_mb = match device {
        Device::Cuda(i) => {
            let mut bytes = 0i64;
            // SAFETY: a plain out-pointer; the shim catches C++ exceptions.
            let ok = unsafe { segzoo_cuda_peak_allocated(i as i32, &mut bytes) };
            ok.then(|| bytes as f64 / (1024.0 * 1024.0))
        }
        _ => None,
    };
    Memory { rss_mb, peak_rss_mb, cuda_max_allocated_mb }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_sample_reads_a_resident_set_below_its_peak() {
        let m = sample(Device::Cpu);
        assert!(m.rss_mb > 1.0, "{m:?}");
        assert!(m.peak_rss_mb >= m.rss_mb, "{m:?}");
        assert_eq!(m.cuda_max_allocated_mb, None);
        assert_eq!(m.peak_mb(), m.peak_rss_mb);
    }
}
