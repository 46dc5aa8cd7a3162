//! segzoo-launch: HCCL-style rank tables, the worker plan derived from them, and the
//! supervision of one worker per local device; the launchers of a multi-server job form a
//! group in which one hub decides for every server.
//!
//! - [`rank_table`]: parsing and validating rank tables; `gen-table`.
//! - [`plan`]: which server this is, which leads, and each local worker's environment.
//! - [`worker`]: starting one worker (process group, environment, log pumps) and its states.
//! - [`group`]: the state machine of one generation of the local workers.
//! - [`supervise`]: driving it with real processes, following the hub.
//! - [`report`]: the typed result of a local generation: success, detail, local ranks.
//! - [`error_file`]: the error file a failing worker may leave, read into the summary.
//! - [`cause`]: why a job stops: its exit code and summary line, the same on every server.
//! - [`hub`]: the job's one decision maker (start, stop, restart, re-form with the servers
//!   present, finish), without sockets.
//! - [`link`]: a launcher's line to the hub, in process or over TCP.
//! - [`wire`]: the group's messages on the wire, heartbeats and loss detection.
//! - [`leader`], [`follower`]: running the hub and admitting followers; joining it.
//! - [`auth`]: the job key and the challenge each side answers, so that only members join.
//! - [`job`]: one launcher's part: single server, leader or follower.
//! - [`error`]: the launcher's one error type and its exit codes.
pub mod auth;
pub mod cause;
pub mod error;
pub mod error_file;
pub mod follower;
pub mod group;
pub mod hub;
pub mod job;
pub mod leader;
pub mod link;
pub mod plan;
pub mod rank_table;
pub mod report;
pub mod supervise;
pub mod wire;
pub mod worker;
