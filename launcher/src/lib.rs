//! segzoo-launch: HCCL-style rank tables, the worker plan derived from them, and the
//! supervision of one worker per local device.
//!
//! - [`rank_table`]: parsing and validating rank tables; `gen-table`.
//! - [`plan`]: which server this is, and each local worker's environment.
//! - [`worker`]: starting one worker (process group, environment, log pumps) and its states.
//! - [`supervise`]: the state machine of a local group, driven by real processes.
//! - [`report`]: the typed result of a run, its summary and its exit code.
//! - [`error`]: the launcher's one error type and its exit codes.
pub mod error;
pub mod plan;
pub mod rank_table;
pub mod report;
pub mod supervise;
pub mod worker;
