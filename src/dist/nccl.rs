//! NCCL through cudarc's dynamically loaded bindings.
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NcclStatus {
    pub found: bool,
    /// `major.minor.patch` when the library loaded.
    pub version: Option<String>,
    /// Why it is unusable, when it is.
    pub detail: Option<String>,
}

/// Decode NCCL's integer version (major*10000 + minor*100 + patch since 2.9).
pub fn decode_version(code: i32) -> String {
    if code >= 10_000 {
        format!("{}.{}.{}", code / 10_000, code / 100 % 100, code % 100)
    } else {
        format!("{}.{}.{}", code / 1000, code / 100 % 10, code % 100)
    }
}

/// Whether libnccl.so can be loaded and which version it is. Never panics:
/// cudarc panics on a missing library, so presence is checked first.
pub fn probe() -> NcclStatus {
    // SAFETY: only attempts to dlopen the library candidates.
    if !unsafe { cudarc::nccl::sys::is_culib_present() } {
        return NcclStatus {
            found: false,
            version: None,
            detail: Some(
                "libnccl.so not found on the library path (.segzoo/lib, LD_LIBRARY_PATH); \
                 a GPU install (SEGZOO_TORCH=cuda scripts/setup.sh) provides it"
                    .into(),
            ),
        };
    }
    match cudarc::nccl::result::get_nccl_version() {
        Ok(code) => NcclStatus { found: true, version: Some(decode_version(code)), detail: None },
        Err(e) => NcclStatus { found: true, version: None, detail: Some(format!("ncclGetVersion failed: {e:?}")) },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_versions() {
        assert_eq!(super::decode_version(22805), "2.28.5");
        assert_eq!(super::decode_version(2708), "2.7.8");
    }
}
