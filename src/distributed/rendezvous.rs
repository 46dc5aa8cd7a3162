//! Where the ranks of a c10d job meet: rank 0 hosts a TCPStore at `MASTER_ADDR:MASTER_PORT`
//! and every rank connects within `dist.init_timeout_s`, then says it has joined, so that a
//! rank that never comes is named. Where the address comes from, by launcher:
//! - segzoo-launch sets `MASTER_ADDR` (the server holding rank 0) and `MASTER_PORT`
//!   (`--master-port`); torchrun, Kubernetes and most schedulers set both;
//! - under srun, `MASTER_ADDR` defaults to the first host of `SLURM_JOB_NODELIST` and
//!   `MASTER_PORT` to a port of the job's own (`slurm::job_port`);
//! - under mpirun, rank 0 picks a free port (or `MASTER_PORT`) and the address goes to the
//!   others over MPI (`backend.rs`).
//!
//! It also chooses the address gloo's transport listens on ([`gloo_bind`]).
use super::c10d::{GlooBind, Store};
use super::slurm;
use super::world::{Launch, World};
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where rank 0 hosts the store, and which variables (or defaults) said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub addr: String,
    pub port: u16,
    pub from: String,
}

impl std::fmt::Display for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr.contains(':') {
            true => write!(f, "[{}]:{}", self.addr, self.port),
            false => write!(f, "{}:{}", self.addr, self.port),
        }
    }
}

/// `MASTER_PORT`, when set.
pub fn master_port(env: Env) -> anyhow::Result<Option<u16>> {
    match env("MASTER_PORT") {
        None => Ok(None),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => bail!("MASTER_PORT={v:?} is not a port number (1-65535)"),
        },
    }
}

/// The rendezvous address from the environment; `None` under mpirun without
/// `MASTER_ADDR`/`MASTER_PORT` (rank 0 picks a port and tells the others over MPI).
pub fn master_from_env(world: &World, env: Env) -> anyhow::Result<Option<Master>> {
    let addr = env("MASTER_ADDR").map(|a| a.trim().to_string()).filter(|a| !a.is_empty());
    let port = master_port(env)?;
    let given = |addr: String, port: u16| Master { addr, port, from: "MASTER_ADDR, MASTER_PORT".into() };
    match world.launch {
        Launch::Single => Ok(None),
        Launch::Mpi => Ok(match (addr, port) {
            (Some(a), Some(p)) => Some(given(a, p)),
            _ => None,
        }),
        Launch::Slurm => {
            let (addr, addr_from) = match addr {
                Some(a) => (a, "MASTER_ADDR"),
                None => {
                    let list = env("SLURM_JOB_NODELIST").or_else(|| env("SLURM_NODELIST")).context(
                        "srun: neither MASTER_ADDR nor SLURM_JOB_NODELIST is set: cannot tell where rank 0 is",
                    )?;
                    let first = slurm::first_host(&list)
                        .with_context(|| format!("SLURM_JOB_NODELIST={list:?}: not a Slurm host list"))?;
                    (first, "the first host of SLURM_JOB_NODELIST")
                }
            };
            let (port, port_from) = match (port, slurm::job_port(env)) {
                (Some(p), _) => (p, "MASTER_PORT"),
                (None, Some(p)) => (p, "15000 + the last digits of SLURM_JOB_ID"),
                (None, None) => (29500, "the default port"),
            };
            Ok(Some(Master { addr, port, from: format!("{addr_from}; port: {port_from}") }))
        }
        Launch::Launcher | Launch::Torchrun => match (addr, port) {
            (Some(a), Some(p)) => Ok(Some(given(a, p))),
            (a, _) => {
                let missing = if a.is_none() { "MASTER_ADDR" } else { "MASTER_PORT" };
                bail!(
                    "rank {} of {} ({}) has no rendezvous address: {missing} is not set ({} sets MASTER_ADDR \
                     and MASTER_PORT for its workers)",
                    world.rank,
                    world.size,
                    world.launch.name(),
                    world.launch.name()
                )
            }
        },
    }
}

/// Rank 0's side: host the store on `port` (0: a free one). A port in use is named.
pub fn host(port: u16, from: &str, timeout: Duration) -> anyhow::Result<(Store, u16)> {
    Store::host(port, timeout).map_err(|e| {
        let text = e.to_string();
        if text.contains("EADDRINUSE") || text.contains("ddress already in use") {
            anyhow::anyhow!(
                "rank 0 cannot host the rendezvous: port {port} ({from}) is already in use on this machine \
                 (another job, or a previous run still exiting); pick another MASTER_PORT \
                 (segzoo-launch: --master-port)"
            )
        } else {
            anyhow::anyhow!("rank 0 cannot host the rendezvous on port {port} ({from}): {text}")
        }
    })
}

/// Another rank's side: reach rank 0's store within `timeout`.
pub fn connect(rank: usize, master: &Master, timeout: Duration) -> anyhow::Result<Store> {
    Store::connect(&master.addr, master.port, timeout).map_err(|e| {
        anyhow::anyhow!(
            "rank {rank} cannot reach the rendezvous at {master} ({}) within {} s: {e}; rank 0 hosts it there: \
             is rank 0 running, and is that address reachable from this machine?",
            master.from,
            timeout.as_secs_f64()
        )
    })
}

/// `2, 5-7`: ranks as a short list.
fn ranges(ranks: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        let mut j = i;
        while j + 1 < ranks.len() && ranks[j + 1] == ranks[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", ranks[i], ranks[j]) } else { ranks[i].to_string() });
        i = j + 1;
    }
    parts.join(", ")
}

/// Say this rank has joined, then wait until all `world.size` have, up to `deadline`; on
/// expiry the error names the ranks that did not come. Rank 0 hosts the store and ends with
/// it: when it gives up it leaves the list for the others and waits a moment for them to
/// read it, so that every rank that came names the missing ones.
pub fn await_members(store: &Store, world: &World, master: &Master, deadline: Instant) -> anyhow::Result<()> {
    let host = hostname();
    store.set(&format!("segzoo/rank/{}", world.rank), format!("{host} pid {}", std::process::id()).as_bytes())?;
    let mut joined = store.add("segzoo/joined", 1)?;
    let lost = |e: anyhow::Error| {
        e.context(format!(
            "rendezvous at {master}: lost the store while waiting for the other ranks (rank 0 hosts it: it gave up \
             or failed; see its error)"
        ))
    };
    while (joined as usize) < world.size {
        let given_up = store.contains("segzoo/missing").map_err(lost)?;
        // Rank 0 decides; another rank decides alone only if rank 0 has not, a while later.
        let late = if world.rank == 0 { deadline } else { deadline + Duration::from_secs(3) };
        if given_up || Instant::now() >= late {
            let missing = if given_up {
                String::from_utf8_lossy(&store.get("segzoo/missing").map_err(lost)?).into_owned()
            } else {
                let mut missing = Vec::new();
                for r in 0..world.size {
                    if !store.contains(&format!("segzoo/rank/{r}"))? {
                        missing.push(r);
                    }
                }
                let list = format!("rank{} {}", if missing.len() == 1 { "" } else { "s" }, ranges(&missing));
                if world.rank == 0 {
                    store.set("segzoo/missing", list.as_bytes())?;
                    // The others poll every 50 ms: a second lets them read the list before
                    // the store goes with this process.
                    std::thread::sleep(Duration::from_secs(1));
                }
                list
            };
            let joined = store.add("segzoo/joined", 0).unwrap_or(joined);
            bail!(
                "rendezvous at {master}: {joined} of {} ranks joined within dist.init_timeout_s; missing: {missing} \
                 (never started, failed before joining, or pointed at another MASTER_ADDR/MASTER_PORT)",
                world.size
            );
        }
        std::thread::sleep(Duration::from_millis(50));
        joined = store.add("segzoo/joined", 0).map_err(lost)?;
    }
    Ok(())
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer of its length.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown host".into()
    }
}

/// Whether `addr` names this machine's loopback.
pub fn is_loopback(addr: &str) -> bool {
    addr == "localhost" || addr.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where gloo listens: `GLOO_SOCKET_IFNAME`'s interfaces when set (as in PyTorch); under
/// segzoo-launch the server's id in the rank table (its address); loopback for a job on
/// this machine alone; else the address this machine's host name resolves to.
pub fn gloo_bind(env: Env, master: &Master) -> GlooBind {
    if let Some(ifnames) = env("GLOO_SOCKET_IFNAME").filter(|s| !s.trim().is_empty()) {
        return GlooBind::Interfaces(ifnames.trim().to_string());
    }
    if let Some(server) = env("SERVER_ID").filter(|s| !s.trim().is_empty()) {
        return GlooBind::Host(server.trim().to_string());
    }
    if is_loopback(&master.addr) {
        return GlooBind::Host("127.0.0.1".into());
    }
    GlooBind::Default
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn world(launch: Launch) -> World {
        World { rank: 1, size: 4, local_rank: 1, local_size: 2, launch, device_id: None }
    }

    #[test]
    fn the_address_by_launcher() {
        let e = env(&[("MASTER_ADDR", "10.1.2.3"), ("MASTER_PORT", "29400")]);
        let m = master_from_env(&world(Launch::Torchrun), &e).expect("ok").expect("given");
        assert_eq!((m.addr.as_str(), m.port, m.to_string()), ("10.1.2.3", 29400, "10.1.2.3:29400".to_string()));
        let e = env(&[("MASTER_PORT", "29400")]);
        let err = master_from_env(&world(Launch::Launcher), &e).expect_err("no address").to_string();
        assert!(err.contains("rank 1 of 4 (segzoo-launch)") && err.contains("MASTER_ADDR is not set"), "{err}");
        let e = env(&[("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")]);
        let err = master_from_env(&world(Launch::Torchrun), &e).expect_err("bad port").to_string();
        assert_eq!(err, "MASTER_PORT=\"70000\" is not a port number (1-65535)");
        assert_eq!(master_from_env(&world(Launch::Mpi), &env(&[])).expect("ok"), None, "mpirun shares it over MPI");
        let e = env(&[("SLURM_JOB_NODELIST", "gpu[07-08]"), ("SLURM_JOB_ID", "4242")]);
        let m = master_from_env(&world(Launch::Slurm), &e).expect("ok").expect("slurm");
        assert_eq!((m.addr.as_str(), m.port), ("gpu07", 19242));
        assert!(m.from.contains("SLURM_JOB_NODELIST"), "{}", m.from);
        let e = env(&[("SLURM_JOB_NODELIST", "gpu[07-08]"), ("MASTER_ADDR", "gpu08"), ("MASTER_PORT", "1234")]);
        let m = master_from_env(&world(Launch::Slurm), &e).expect("ok").expect("slurm");
        assert_eq!((m.addr.as_str(), m.port), ("gpu08", 1234));
    }

    #[test]
    fn gloo_listens_where_the_job_says() {
        let m = |addr: &str| Master { addr: addr.into(), port: 1, from: String::new() };
        assert_eq!(
            gloo_bind(&env(&[("GLOO_SOCKET_IFNAME", "eth0,eth1"), ("SERVER_ID", "10.0.0.2")]), &m("10.0.0.1")),
            GlooBind::Interfaces("eth0,eth1".into())
        );
        assert_eq!(gloo_bind(&env(&[("SERVER_ID", "127.0.0.2")]), &m("127.0.0.1")), GlooBind::Host("127.0.0.2".into()));
        assert_eq!(gloo_bind(&env(&[]), &m("localhost")), GlooBind::Host("127.0.0.1".into()));
        assert_eq!(gloo_bind(&env(&[]), &m("10.0.0.1")), GlooBind::Default);
    }

    #[test]
    fn rank_lists_are_short() {
        assert_eq!(ranges(&[2, 5, 6, 7, 9]), "2, 5-7, 9");
        assert_eq!(ranges(&[0]), "0");
    }
}
