//! Makes binaries find the pinned libtorch (and NCCL) at run time without
//! LD_LIBRARY_PATH, and keeps libtorch_cuda linked on full CUDA installs.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=SEGZOO_ROOT");
    let root =
        std::env::var("SEGZOO_ROOT").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let flavour_file = root.join(".segzoo/torch_flavour");
    println!("cargo:rerun-if-changed={}", flavour_file.display());

    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = Path::new(&libtorch).join("lib");
        // Through the .segzoo/libtorch link, so re-running setup re-targets it.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-env=SEGZOO_LIBTORCH_VERSION={}", libtorch_version(Path::new(&libtorch)));
        build_shim(Path::new(&libtorch));
    } else {
        println!("cargo:rustc-env=SEGZOO_LIBTORCH_VERSION=unknown");
    }
    // Folder holding the libnccl.so link that cudarc dlopens.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", root.join(".segzoo/lib").display());

    let flavour = std::fs::read_to_string(&flavour_file).unwrap_or_default();
    if flavour.trim() == "cuda" {
        // Nothing references libtorch_cuda symbols directly, so --as-needed would drop it
        // and CUDA would look unavailable. The slim CPU set must not do this: its
        // libtorch_cuda needs CUDA libraries (libcusparse, …) that are not installed.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }
    println!("cargo:rustc-env=SEGZOO_TORCH_FLAVOUR={}", flavour.trim());
}

fn libtorch_version(libtorch: &Path) -> String {
    // PyPI torch has version.py (`__version__ = '2.11.0+cpu'`); a C++ libtorch zip has build-version.
    if let Ok(s) = std::fs::read_to_string(libtorch.join("build-version")) {
        return s.trim().to_string();
    }
    if let Ok(s) = std::fs::read_to_string(libtorch.join("version.py")) {
        for line in s.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                return rest.trim_start_matches([' ', '=']).trim().trim_matches(['\'', '"']).to_string();
            }
        }
    }
    "unknown".to_string()
}

/// The C++ shim, one concern per file: csrc/autocast.cpp (per-device autocast with a
/// dtype; tch exposes CUDA/fp16 only), csrc/group_sum.cpp (a differentiable sum over the
/// ranks for SyncBatchNorm; tch has no autograd-function API) and csrc/grad_hook.cpp
/// (gradient-ready hooks for overlapping the all-reduce with backward) and csrc/trace.cpp
/// (the traced ATen graph of a forward, for ONNX export and BatchNorm folding) and
/// csrc/memory_format.cpp (channels-last layouts; tch has no memory-format API) and
/// csrc/device_memory.cpp (the CUDA allocator's peak, for the step line).
fn build_shim(libtorch: &Path) {
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    println!("cargo:rerun-if-changed=csrc/group_sum.cpp");
    println!("cargo:rerun-if-changed=csrc/grad_hook.cpp");
    println!("cargo:rerun-if-changed=csrc/trace.cpp");
    println!("cargo:rerun-if-changed=csrc/memory_format.cpp");
    println!("cargo:rerun-if-changed=csrc/device_memory.cpp");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/autocast.cpp")
        .file("csrc/group_sum.cpp")
        .file("csrc/grad_hook.cpp")
        .file("csrc/trace.cpp")
        .file("csrc/memory_format.cpp")
        .file("csrc/device_memory.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .compile("segzoo_shim");
}
