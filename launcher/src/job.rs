//! One launcher's part in a job, by its [`Role`]: with a one-server table the hub runs in
//! this process and nothing touches the network; the launcher of the server holding rank 0
//! runs the hub and listens for the others; every other launcher joins it. In every role
//! the local workers are supervised the same way ([`supervise::run`]), through a [`Link`].
use crate::auth::JobKey;
use crate::error::Error;
use crate::hub::Hub;
use crate::link::{self, Link};
use crate::supervise::{self, Finished};
use crate::wire::Hello;
use crate::{follower, leader};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Single,
    /// Holds rank 0: runs the hub, listening on this port.
    Leader {
        port: u16,
    },
    /// Joins the leader at this `host:port`.
    Follower {
        addr: String,
    },
}

pub struct Options {
    pub local: supervise::Options,
    pub role: Role,
    /// Every server's id, in table order.
    pub ids: Vec<String>,
    /// This server's index in `ids`.
    pub index: usize,
    pub world_size: usize,
    pub join_timeout: Duration,
    pub heartbeat_timeout: Duration,
    /// How few servers may go on after a loss (every server: a loss ends the job).
    pub min_servers: usize,
    pub rejoin_timeout: Duration,
    pub key: JobKey,
}

pub async fn run(o: &Options) -> Result<Finished, Error> {
    match &o.role {
        Role::Follower { addr } => {
            let hello = Hello {
                server_id: o.ids[o.index].clone(),
                world_size: o.world_size,
                servers: o.ids.len(),
                max_restarts: o.local.max_restarts,
                min_servers: o.min_servers,
                // Each attempt to join makes its own (follower.rs).
                challenge: String::new(),
            };
            let join = follower::Options {
                addr: addr.clone(),
                hello,
                join_timeout: o.join_timeout,
                heartbeat_timeout: o.heartbeat_timeout,
                key: o.key.clone(),
            };
            let mut link = follower::join(&join).await?;
            let result = supervise::run(&o.local, &mut link).await;
            // A failing launcher's last report must reach the leader before it exits.
            link.close().await;
            result
        }
        Role::Single | Role::Leader { .. } => {
            let listener = match o.role {
                Role::Leader { port } => Some(leader::bind(port).await?),
                _ => None,
            };
            let devices = o.local.table.servers.iter().map(|s| s.devices.len()).collect();
            let hub = Hub::new(o.ids.clone(), devices, o.local.max_restarts, o.min_servers);
            let config = leader::Options {
                ids: o.ids.clone(),
                leader: o.index,
                world_size: o.world_size,
                max_restarts: o.local.max_restarts,
                min_servers: o.min_servers,
                join_timeout: o.join_timeout,
                heartbeat_timeout: o.heartbeat_timeout,
                rejoin_timeout: o.rejoin_timeout,
                key: o.key.clone(),
            };
            let (link, hub_end) = link::in_process();
            // The local side drops its link when it returns: the hub then knows it is gone.
            let local = async move {
                let mut link: Link = link;
                supervise::run(&o.local, &mut link).await
            };
            let ((), result) = tokio::join!(leader::serve(&config, hub, hub_end, listener), local);
            result
        }
    }
}
