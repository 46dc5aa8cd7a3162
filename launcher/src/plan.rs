//! Which server of a rank table this host is, the table of a generation with fewer servers
//! (ranks renumbered), and the environment of each local worker.
use crate::error::Error;
use crate::rank_table::{RankTable, Server};
use std::path::Path;

/// One worker to run on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub rank: usize,
    pub local_rank: usize,
    pub device_id: u32,
    /// Variables the worker gets on top of the launcher's environment.
    pub env: Vec<(String, String)>,
}

/// The launcher's own place in an outer job (`mpirun segzoo-launch …`, `srun segzoo-launch
/// …`): these describe the launcher, not its workers, and are not passed on.
pub const NOT_PASSED_ON: [&str; 8] = [
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "PMIX_RANK",
    "NCCL_COMM_ID",
];

/// Names this host answers to: interface addresses and the host name.
pub fn local_identities() -> Vec<String> {
    let mut ids: Vec<String> =
        if_addrs::get_if_addrs().map(|ifs| ifs.into_iter().map(|i| i.ip().to_string()).collect()).unwrap_or_default();
    ids.push(gethostname::gethostname().to_string_lossy().into_owned());
    ids.push("localhost".into());
    ids
}

/// Index of this server in the table: `server_id` if given, else the first
/// server whose id is one of this host's `identities`.
pub fn find_server(table: &RankTable, server_id: Option<&str>, identities: &[String]) -> Result<usize, Error> {
    let servers = || table.servers.iter().map(|s| s.server_id.as_str()).collect::<Vec<_>>().join(", ");
    match server_id {
        Some(id) => table
            .servers
            .iter()
            .position(|s| s.server_id == id)
            .ok_or_else(|| Error::ServerIdNotListed { id: id.to_string(), servers: servers() }),
        None => table
            .servers
            .iter()
            .position(|s| identities.contains(&s.server_id))
            .ok_or_else(|| Error::HostNotListed { identities: identities.join(", "), servers: servers() }),
    }
}

/// Index of the server holding rank 0: it hosts the rendezvous and leads the group.
pub fn rank0_server(table: &RankTable) -> Result<usize, Error> {
    table.servers.iter().position(|s| s.devices.iter().any(|d| d.rank_id == 0)).ok_or_else(|| Error::NoRankZero {
        servers: table.servers.iter().map(|s| s.server_id.as_str()).collect::<Vec<_>>().join(", "),
    })
}

/// The table of a generation whose members are the servers `members` (indices into
/// `table`): their devices keep their order of rank and are renumbered 0, 1, … — so the
/// lowest surviving rank becomes rank 0, and with every server a member nothing changes.
pub fn generation_table(table: &RankTable, members: &[usize]) -> RankTable {
    let mut ranks: Vec<usize> =
        members.iter().flat_map(|&i| table.servers[i].devices.iter().map(|d| d.rank_id)).collect();
    ranks.sort_unstable();
    let renumber = |old: usize| ranks.binary_search(&old).unwrap_or(old);
    let servers = members
        .iter()
        .map(|&i| {
            let s = &table.servers[i];
            let mut devices = s.devices.clone();
            devices.iter_mut().for_each(|d| d.rank_id = renumber(d.rank_id));
            Server { server_id: s.server_id.clone(), devices }
        })
        .collect();
    RankTable { servers }
}

/// The workers of server `index`, ordered by rank, with their environments: MindSpore's
/// convention (`RANK_ID`, `RANK_SIZE`, `DEVICE_ID`, `RANK_TABLE_FILE`) and torchrun's
/// (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`), which agree, and where rank 0
/// hosts the rendezvous (`MASTER_ADDR`: its server's id; `MASTER_PORT`).
pub fn workers(table: &RankTable, index: usize, table_file: &Path, master_port: u16) -> Result<Vec<Worker>, Error> {
    let server = &table.servers[index];
    let mut devices = server.devices.clone();
    devices.sort_by_key(|d| d.rank_id);
    let world = table.world_size();
    let master = &table.servers[rank0_server(table)?].server_id;
    let local_size = devices.len();
    let workers = devices
        .iter()
        .enumerate()
        .map(|(local_rank, d)| {
            let env = [
                ("RANK_TABLE_FILE", table_file.display().to_string()),
                ("RANK_SIZE", world.to_string()),
                ("RANK_ID", d.rank_id.to_string()),
                ("DEVICE_ID", d.device_id.to_string()),
                ("LOCAL_RANK", local_rank.to_string()),
                ("LOCAL_SIZE", local_size.to_string()),
                ("SERVER_ID", server.server_id.clone()),
                ("RANK", d.rank_id.to_string()),
                ("WORLD_SIZE", world.to_string()),
                ("LOCAL_WORLD_SIZE", local_size.to_string()),
                ("MASTER_ADDR", master.clone()),
                ("MASTER_PORT", master_port.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            Worker { rank: d.rank_id, local_rank, device_id: d.device_id, env }
        })
        .collect();
    Ok(workers)
}
