//! MPI through rsmpi (OpenMPI from Debian).
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MpiStatus {
    /// The implementation's own description, e.g. "Open MPI v4.1.4, …".
    pub library: String,
    /// MPI standard version the library implements.
    pub standard: String,
}

/// The linked MPI library; valid before MPI_Init, so this starts nothing.
pub fn probe() -> MpiStatus {
    let (major, minor) = mpi::environment::version();
    let library = mpi::environment::library_version()
        .map(|s| {
            // "Open MPI v4.1.4, package: …, repo rev: …\0": the name and version are enough.
            let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
            s.split(',').next().unwrap_or(s).trim().to_string()
        })
        .unwrap_or_else(|e| format!("unreadable version string: {e}"));
    MpiStatus { library, standard: format!("{major}.{minor}") }
}
