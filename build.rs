//! Makes binaries find the pinned libtorch at run time without LD_LIBRARY_PATH, builds the
//! C++ shim against its headers (c10d's NCCL parts only in the CUDA flavour, which sets
//! `cfg(segzoo_cuda)`), and keeps libtorch_cuda linked on full CUDA installs.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=SEGZOO_ROOT");
    let root =
        std::env::var("SEGZOO_ROOT").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let flavour_file = root.join(".segzoo/torch_flavour");
    println!("cargo:rerun-if-changed={}", flavour_file.display());
    println!("cargo::rustc-check-cfg=cfg(segzoo_cuda)");
    // SEGZOO_TORCH_FLAVOUR overrides the file: scripts/gpu_bundle.sh builds the CUDA flavour
    // against a venv of its own while the checkout stays CPU.
    println!("cargo:rerun-if-env-changed=SEGZOO_TORCH_FLAVOUR");
    let flavour = std::env::var("SEGZOO_TORCH_FLAVOUR")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| std::fs::read_to_string(&flavour_file).unwrap_or_default());
    let cuda = flavour.trim() == "cuda";

    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = Path::new(&libtorch).join("lib");
        // Through the .segzoo/libtorch link, so re-running setup re-targets it.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-env=SEGZOO_LIBTORCH_VERSION={}", libtorch_version(Path::new(&libtorch)));
        build_shim(Path::new(&libtorch), cuda);
        if cuda {
            println!("cargo:rustc-cfg=segzoo_cuda");
        }
    } else {
        println!("cargo:rustc-env=SEGZOO_LIBTORCH_VERSION=unknown");
    }

    if cuda {
        // libtorch_cuda registers CUDA with libtorch when it loads: tch references none of
        // its symbols, so --as-needed would drop it and CUDA would look unavailable (the
        // NCCL shim needs it and c10_cuda anyway). The slim CPU set must not do this: its
        // libtorch_cuda needs CUDA libraries (libcusparse, …) that are not installed.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-lc10_cuda,-ltorch,--as-needed");
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

/// The C++ shim, one concern per file:
/// - csrc/autocast.cpp: per-device autocast with a dtype (tch exposes CUDA/fp16 only);
/// - csrc/group_sum.cpp: a differentiable sum over the ranks for SyncBatchNorm (tch has no
///   autograd-function API); csrc/grad_hook.cpp: gradient-ready hooks for the overlapped
///   all-reduce;
/// - csrc/trace.cpp: the traced ATen graph of a forward (ONNX export, BatchNorm folding);
/// - csrc/memory_format.cpp: channels-last layouts; csrc/device_memory.cpp: the CUDA
///   allocator's peak, for the step line; csrc/cuda_current.cpp: a rank's current device;
///   csrc/device_events.cpp: CUDA timing events for the step's time breakdown;
/// - csrc/c10d_store.cpp, c10d_gloo.cpp, c10d_ops.cpp: c10d's TCPStore, ProcessGroupGloo
///   (gloo headers from Debian's libgloo-dev; the symbols are libtorch_cpu's) and the
///   collectives; in the CUDA flavour csrc/c10d_nccl.cpp (ProcessGroupNCCL) and
///   csrc/cuda_devices.cpp (GPU names), against the pip wheels' CUDA, CCCL and NCCL headers.
fn build_shim(libtorch: &Path, cuda: bool) {
    let mut files = vec![
        "autocast",
        "group_sum",
        "grad_hook",
        "trace",
        "memory_format",
        "device_memory",
        "cuda_current",
        "device_events",
        "c10d_store",
        "c10d_gloo",
        "c10d_ops",
    ];
    if cuda {
        files.extend(["c10d_nccl", "cuda_devices"]);
    }
    println!("cargo:rerun-if-changed=csrc/c10d_common.h");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag_if_supported("-Wno-unused-parameter")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("USE_C10D_GLOO", None);
    for f in &files {
        println!("cargo:rerun-if-changed=csrc/{f}.cpp");
        build.file(format!("csrc/{f}.cpp"));
    }
    if cuda {
        // site-packages/nvidia next to site-packages/torch: the pip wheels' headers, laid out
        // one way by CUDA 13's wheels (cu13/, with nvidia-cuda-crt and -cccl inside it) and
        // another by CUDA 12's (cuda_runtime/, cuda_nvcc/ for crt/, cuda_cccl/).
        let nvidia = libtorch.join("../nvidia");
        let dirs = [
            "cu13/include",
            "cu13/include/cccl",
            "cuda_runtime/include",
            "cuda_nvcc/include",
            "cuda_cccl/include",
            "nccl/include",
        ];
        for dir in dirs.iter().map(|d| nvidia.join(d)).filter(|d| d.is_dir()) {
            build.include(dir);
        }
        // c10d_nccl.cpp sets the rank's device through c10_cuda (linked above).
        build.define("USE_C10D_NCCL", None).define("USE_CUDA", None).flag_if_supported("-Wno-interference-size");
    }
    build.compile("segzoo_shim");
}
