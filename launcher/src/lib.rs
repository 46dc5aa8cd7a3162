//! segzoo-launch: HCCL-style rank tables and the worker plan derived from them.
pub mod plan;
pub mod rank_table;
pub mod supervise;
