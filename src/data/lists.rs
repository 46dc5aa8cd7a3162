//! List files: one sample per line, `image label` (segmentation), `image class`
//! (classification) or `image` alone (inference), paths relative to a root.
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct ListEntry {
    pub image: PathBuf,
    /// The label path, or the class index for classification lists.
    pub target: Option<String>,
    /// 1-based line in the list file, for messages.
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read list {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: the list has no entries", path.display())]
    Empty { path: PathBuf },
    #[error("{}:{line}: {message}", path.display())]
    Line { path: PathBuf, line: usize, message: String },
}

/// What each line must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// `image label`
    Pair,
    /// `image [label]`
    ImageOnly,
}

/// Read a list; blank lines and `#` comments are skipped.
pub fn read_list(path: &Path, columns: Columns) -> Result<Vec<ListEntry>, ListError> {
    let text = std::fs::read_to_string(path).map_err(|source| ListError::Io { path: path.to_path_buf(), source })?;
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let err = |message: String| ListError::Line { path: path.to_path_buf(), line: i + 1, message };
        match (parts.len(), columns) {
            (1, Columns::Pair) => {
                return Err(err(format!("expected `image label`, found one column: {line:?}")));
            }
            (1 | 2, _) => entries.push(ListEntry {
                image: PathBuf::from(parts[0]),
                target: parts.get(1).map(|s| s.to_string()),
                line: i + 1,
            }),
            (n, _) => return Err(err(format!("expected at most two columns, found {n}: {line:?}"))),
        }
    }
    if entries.is_empty() {
        return Err(ListError::Empty { path: path.to_path_buf() });
    }
    Ok(entries)
}

/// Write `lines` to `path` unless it holds another list already: replacing one needs
/// `force` (a list written by hand must not be lost to a re-run of `make-lists`).
pub fn write_new_list(path: &Path, lines: &[String], force: bool) -> anyhow::Result<()> {
    let text = lines.join("\n") + "\n";
    if !force && path.exists() && std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        anyhow::bail!("{} exists and holds another list: --force replaces it", path.display());
    }
    write_list(path, lines).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Write `lines` to `path` (through a temporary file and a rename).
pub fn write_list(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let tmp = path.with_extension("lst.tmp");
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
