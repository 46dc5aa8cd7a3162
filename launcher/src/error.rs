//! The launcher's one error type and its exit codes: 2 for bad input (found before any
//! worker starts, or a leader refusing this server's table), 1 for the launcher's own
//! failures and a lost group. A run that happened, failed or not,
//! is not an error: its code comes from [`crate::cause::JobCause::exit_code`].
use crate::rank_table::TableError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rank table cannot be read or is invalid.
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("--server-id {id} is not in the rank table (servers: {servers})")]
    ServerIdNotListed { id: String, servers: String },
    #[error("this host ({identities}) is not in the rank table (servers: {servers}); pass --server-id")]
    HostNotListed { identities: String, servers: String },
    /// A bad command-line value; the message names the option.
    #[error("{0}")]
    Argument(String),
    /// Unreachable with a validated table (rank ids are exactly 0..n), kept explicit.
    #[error("no server of the rank table holds rank 0 (servers: {servers})")]
    NoRankZero { servers: String },
    /// The leader does not take this server: its table or options differ.
    #[error("the group leader at {addr} refused this server: {reason}")]
    Refused { addr: String, reason: String },
    #[error("cannot join the group at {addr} within {waited} s: {last}")]
    CannotJoin { addr: String, waited: f64, last: String },
    /// A follower's connection to the leader closed or went silent.
    #[error("lost the group: {0}")]
    LostGroup(String),
    #[error("cannot create log dir {}: {source}", path.display())]
    LogDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {}: {source}", path.display())]
    LogFile { path: PathBuf, source: std::io::Error },
    /// The worker command cannot be started (not found, not executable, no resources).
    #[error("cannot start `{program}` for rank {rank}: {source}")]
    Spawn { program: String, rank: usize, source: std::io::Error },
    /// Without its pid a worker's group cannot be signalled (and `killpg(0)` would hit ours).
    #[error("rank {rank}: the worker has no process id, so it cannot be supervised")]
    NoPid { rank: usize },
    /// Any other I/O failure of the launcher itself; `context` says what it was doing.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// The launcher's exit code for this error (docs/launcher.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            // The input is at fault, as with a usage error; nothing has started.
            Error::Table(_)
            | Error::ServerIdNotListed { .. }
            | Error::HostNotListed { .. }
            | Error::Argument(_)
            | Error::NoRankZero { .. }
            | Error::Refused { .. } => 2,
            Error::CannotJoin { .. }
            | Error::LostGroup(_)
            | Error::LogDir { .. }
            | Error::LogFile { .. }
            | Error::Spawn { .. }
            | Error::NoPid { .. }
            | Error::Io { .. }
            | Error::Internal(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::NotFound)
    }

    #[test]
    fn bad_input_exits_2_and_the_launchers_own_failures_exit_1() {
        let table = TableError::Missing { file: "t.json".into(), field: "status".into() };
        for e in [
            Error::Table(table),
            Error::ServerIdNotListed { id: "a".into(), servers: "b".into() },
            Error::HostNotListed { identities: "a".into(), servers: "b".into() },
            Error::Argument("--grace-period -1: must be a non-negative number of seconds".into()),
            Error::NoRankZero { servers: "a, b".into() },
            Error::Refused {
                addr: "a:1".into(),
                reason: "world size 4 in this server's rank table, 8 in the leader's".into(),
            },
        ] {
            assert_eq!(e.exit_code(), 2, "{e}");
        }
        for e in [
            Error::LogDir { path: "lg".into(), source: io_error() },
            Error::LogFile { path: "lg/rank_0.log".into(), source: io_error() },
            Error::Spawn { program: "w".into(), rank: 0, source: io_error() },
            Error::NoPid { rank: 0 },
            Error::io("writing output")(io_error()),
            Error::Internal("x".into()),
            Error::CannotJoin { addr: "a:1".into(), waited: 300.0, last: "connection refused".into() },
            Error::LostGroup("connection to the leader at a:1 closed".into()),
        ] {
            assert_eq!(e.exit_code(), 1, "{e}");
        }
    }

    #[test]
    fn a_spawn_failure_names_the_program_and_the_rank() {
        let e = Error::Spawn { program: "/nonexistent/worker".into(), rank: 3, source: io_error() };
        assert!(e.to_string().starts_with("cannot start `/nonexistent/worker` for rank 3: "), "{e}");
    }
}
