//! scripts/gpu_bundle.sh on the CPU build (the CUDA one takes a 5 GB venv and 15 minutes):
//! the bundle carries the binaries and every library they load that PyTorch's wheel does
//! not ship, and the script's own proof passes — Open MPI hidden in a private mount
//! namespace, only torch's lib/ and the bundle on the library path, `segzoo env` runs.
use std::path::Path;
use std::process::Command;

#[test]
fn the_bundle_carries_open_mpi_not_torch_and_runs_with_the_systems_open_mpi_hidden() {
    let out = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = Path::new(env!("CARGO_BIN_EXE_segzoo")).parent().expect("binary folder");
    let dir = out.path().join("bundle");
    // Debug binaries are larger than the release ones the 60 MiB limit is meant for.
    let run = Command::new(root.join("scripts/gpu_bundle.sh"))
        .arg("--from")
        .arg(bin)
        .arg("--torch")
        .arg(root.join(".segzoo/libtorch"))
        .args(["--max-mib", "120"])
        .arg(&dir)
        .output()
        .expect("scripts/gpu_bundle.sh runs");
    let text = String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}");
    for f in ["bin/segzoo", "bin/segzoo-launch", "lib/libmpi.so.40", "env.sh", "scripts/gpu_check.sh", "MANIFEST.json"]
    {
        assert!(dir.join(f).exists(), "{f} missing from the bundle\n{text}");
    }
    let libs: Vec<String> = std::fs::read_dir(dir.join("lib"))
        .expect("lib/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!libs.iter().any(|l| l.starts_with("libtorch") || l.starts_with("libc10")), "torch's own: {libs:?}");
    assert!(!libs.iter().any(|l| l.starts_with("libc.so") || l.starts_with("libstdc++")), "the system's: {libs:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("MANIFEST.json")).expect("manifest")).expect("JSON");
    assert!(manifest["needs"]["glibc"].as_str().is_some_and(|g| g.starts_with("GLIBC_2.")), "{manifest}");
    assert!(manifest["files"]["lib/libmpi.so.40"]["sha256"].as_str().is_some_and(|s| s.len() == 64), "{manifest}");
    if text.contains("proof skipped") {
        eprintln!("skipped the proof: {}", text.lines().find(|l| l.contains("proof skipped")).unwrap_or_default());
    } else {
        assert!(text.contains("proof: with Open MPI hidden"), "{text}");
        assert!(text.contains("MPI:              Open MPI"), "the bundled Open MPI answered: {text}");
    }
}
