//! What `segzoo env` says of NCCL: the version libtorch's CUDA build runs
//! (csrc/c10d_nccl.cpp), or why this build has none. The NCCL backend itself is c10d's
//! ProcessGroupNCCL (`process_group.rs`).
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NcclStatus {
    pub found: bool,
    /// `major.minor.patch` when NCCL is there.
    pub version: Option<String>,
    /// Why it is unusable, when it is.
    pub detail: Option<String>,
}

#[cfg(segzoo_cuda)]
extern "C" {
    fn segzoo_nccl_version(out: *mut std::ffi::c_char, len: usize) -> bool;
}

/// NCCL's version from libtorch; never fails.
#[cfg(segzoo_cuda)]
pub fn probe() -> NcclStatus {
    let mut buf = [0 as std::ffi::c_char; 64];
    // SAFETY: a writable buffer of its length; the shim NUL-terminates it.
    if unsafe { segzoo_nccl_version(buf.as_mut_ptr(), buf.len()) } {
        // SAFETY: NUL-terminated above.
        let v = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
        NcclStatus { found: true, version: Some(v), detail: None }
    } else {
        let detail = "libtorch could not load NCCL (is nvidia-nccl installed in .venv?)".to_string();
        NcclStatus { found: false, version: None, detail: Some(detail) }
    }
}

/// This build has no NCCL: the CPU flavour of libtorch.
#[cfg(not(segzoo_cuda))]
pub fn probe() -> NcclStatus {
    NcclStatus {
        found: false,
        version: None,
        detail: Some("not in the CPU build; the CUDA build has it (SEGZOO_TORCH=cuda scripts/setup.sh)".into()),
    }
}

/// The names of `count` CUDA devices (empty without the CUDA build).
pub fn device_names(count: i64) -> Vec<String> {
    #[cfg(segzoo_cuda)]
    {
        extern "C" {
            fn segzoo_cuda_device_name(index: i32, out: *mut std::ffi::c_char, len: usize) -> bool;
        }
        (0..count as i32)
            .map(|i| {
                let mut buf = [0 as std::ffi::c_char; 256];
                // SAFETY: as above.
                if unsafe { segzoo_cuda_device_name(i, buf.as_mut_ptr(), buf.len()) } {
                    // SAFETY: NUL-terminated by the shim.
                    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
                } else {
                    "<name unavailable>".into()
                }
            })
            .collect()
    }
    #[cfg(not(segzoo_cuda))]
    {
        let _ = count;
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_says_why_nccl_is_missing_or_its_version() {
        let s = probe();
        match s.version {
            Some(v) => assert_eq!(v.split('.').count(), 3, "{v}"),
            None => {
                assert!(!s.found && s.detail.is_some_and(|d| d.contains("SEGZOO_TORCH=cuda") || d.contains("NCCL")))
            }
        }
    }
}
