//! What a command prints, and the one place that prints it.
use anyhow::Context;
use std::fmt::Write as _;
use std::path::Path;

/// A command's standard output.
#[derive(Debug, Default)]
pub struct Output(String);

impl Output {
    pub fn none() -> Self {
        Output(String::new())
    }

    pub fn text(text: impl Into<String>) -> Self {
        Output(text.into())
    }

    /// A value for programs (`--json`), pretty-printed.
    pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<Self> {
        Ok(Output(serde_json::to_string_pretty(value)? + "\n"))
    }

    /// Append a line.
    pub fn line(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{line}");
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Print to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
    pub fn print(&self) -> anyhow::Result<()> {
        use std::io::Write;
        match std::io::stdout().lock().write_all(self.0.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::anyhow!("writing output: {e}")),
            _ => Ok(()),
        }
    }
}

/// Write `value` as pretty JSON to `path` (`--json FILE`).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?).with_context(|| format!("writing {}", path.display()))
}
