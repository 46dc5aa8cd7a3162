//! What a command prints, and the one place that prints it.
use anyhow::Context;
use std::fmt::Write as _;
use std::path::Path;

/// A command's standard output, and its exit code: a command that did its work but found
/// problems (a data check's errors, images it had to skip) prints its report and exits 1.
#[derive(Debug, Default)]
pub struct Output(String, u8);

impl Output {
    pub fn none() -> Self {
        Output(String::new(), 0)
    }

    pub fn text(text: impl Into<String>) -> Self {
        Output(text.into(), 0)
    }

    /// A value for programs (`--json`), pretty-printed.
    pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<Self> {
        Ok(Output(serde_json::to_string_pretty(value)? + "\n", 0))
    }

    /// Append a line.
    pub fn line(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{line}");
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same output, ending the process with `code`.
    pub fn with_exit_code(self, code: u8) -> Self {
        Output(self.0, code)
    }

    pub fn exit_code(&self) -> u8 {
        self.1
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

/// An error that ends the command with its own exit code (2: the input the command was
/// given cannot be used, e.g. a bad config for `segzoo data check`).
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct ExitWith {
    pub code: u8,
    pub error: anyhow::Error,
}
