//! Files written whole or not at all: through a temporary file in the same folder, synced,
//! then renamed over the target, so a crash or a full disk never leaves half a file under
//! the real name (and an existing file stays as it was).
use anyhow::Context;
use std::path::Path;

/// Writes `path` by calling `write` on a temporary path next to it.
pub fn write_with(path: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        write(&tmp).with_context(|| format!("writing {}", path.display()))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub fn write_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_with(path, |tmp| Ok(std::fs::write(tmp, bytes)?))
}
