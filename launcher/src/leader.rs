//! Where the [`Hub`] runs: in the launcher of the server holding rank 0 (with a one-server
//! table, in the only launcher, without a network). It admits followers — each must prove
//! the job key (`auth.rs`) and match its own table and options —, starts generation 0 once
//! every server has joined, admits servers (re)joining a running job, times the wait for
//! lost servers to rejoin, and carries reports to the hub and its commands out: to the
//! local launcher through channels, to followers through their connections, until the job
//! is finished.
use crate::auth::{self, JobKey};
use crate::cause::JobCause;
use crate::error::Error;
use crate::hub::{Command, Hub, Out, Report};
use crate::link::{Down, HubEnd};
use crate::wire::{self, Hello, Quit, ToFollower, ToLeader};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub struct Options {
    /// Every server's id, in table order.
    pub ids: Vec<String>,
    /// This server's index: the one holding rank 0.
    pub leader: usize,
    pub world_size: usize,
    pub max_restarts: u32,
    pub min_servers: usize,
    pub join_timeout: Duration,
    pub heartbeat_timeout: Duration,
    /// How long to wait for lost servers before going on without them.
    pub rejoin_timeout: Duration,
    pub key: JobKey,
}

/// How often the leader says who it is still waiting for.
const REMIND: Duration = Duration::from_secs(30);
/// How long the last words to a follower (a refusal, the finish) may take.
const LAST_WORDS: Duration = Duration::from_secs(3);

/// Listen for followers on every interface: they know this server by its table id.
pub async fn bind(port: u16) -> Result<TcpListener, Error> {
    TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(Error::io(format!("cannot listen for the group on 0.0.0.0:{port}")))
}

/// A follower's connection after its hello, before it is admitted.
struct Handshake {
    hello: Hello,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    peer: SocketAddr,
}

/// What a follower's connection brings.
enum Incoming {
    Report(Report),
    Lost(Quit),
}

struct Leader<'a> {
    o: &'a Options,
    hub: Hub,
    local: UnboundedSender<Down>,
    /// Each follower's command queue, while it is connected and not finished.
    followers: Vec<Option<UnboundedSender<Command>>>,
    joined: Vec<bool>,
    started: bool,
    incoming: UnboundedSender<(usize, Incoming)>,
    /// Every follower connection's read and write loops.
    connections: JoinSet<()>,
    /// While the hub waits for lost servers: when it stops waiting.
    rejoin_deadline: Option<Instant>,
}

/// Run the hub until the job is finished and every launcher has been told.
pub async fn serve(o: &Options, hub: Hub, local: HubEnd, listener: Option<TcpListener>) {
    let HubEnd { up: mut local_up, down } = local;
    let (incoming_tx, mut incoming) = unbounded_channel();
    let (hello_tx, mut hellos) = unbounded_channel();
    let n = o.ids.len();
    let mut l = Leader {
        o,
        hub,
        local: down,
        followers: vec![None; n],
        joined: (0..n).map(|i| i == o.leader).collect(),
        started: false,
        incoming: incoming_tx,
        connections: JoinSet::new(),
        rejoin_deadline: None,
    };
    if let Some(port) = listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port()) {
        eprintln!("segzoo-launch: leading the group of {n} servers; listening on 0.0.0.0:{port}");
        l.say_joined(false);
    }
    l.start_if_all_joined();
    let join_deadline = Instant::now() + o.join_timeout;
    let mut reminder = tokio::time::interval_at(Instant::now() + REMIND, REMIND);
    let mut local_open = true;
    while !l.hub.finished() {
        tokio::select! {
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(handshake(stream, peer, o.heartbeat_timeout, o.key.clone(), hello_tx.clone()));
                }
                Err(e) => {
                    eprintln!("segzoo-launch: accepting a group connection: {e}");
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(h) = hellos.recv() => l.on_hello(h).await,
            Some((server, event)) = incoming.recv() => l.on_incoming(server, event),
            report = local_up.recv(), if local_open => {
                let out = match report {
                    Some(r) => l.hub.report(o.leader, r),
                    // The local launcher failed (it said why first) or is gone.
                    None => {
                        local_open = false;
                        l.hub.lost(o.leader, "its launcher stopped".into())
                    }
                };
                l.dispatch(out);
            }
            _ = tokio::time::sleep_until(join_deadline), if !l.started => l.give_up(),
            _ = tokio::time::sleep_until(l.rejoin_deadline.unwrap_or(join_deadline)), if l.rejoin_deadline.is_some() => {
                let out = l.hub.rejoin_expired();
                eprintln!("segzoo-launch: the rejoin wait is over; going on with the servers present");
                l.dispatch(out);
            }
            _ = reminder.tick(), if !l.started => l.say_joined(true),
        }
    }
    l.drain().await;
}

/// The next connection; never, without a listener.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Read a new connection's hello, answer its challenge and check its answer to ours; pass
/// on a launcher that proved the job key. Anything else is refused (or ignored) and logged,
/// and the job goes on.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    key: JobKey,
    to: UnboundedSender<Handshake>,
) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let why = |got: std::io::Result<Option<ToLeader>>| match got {
        Ok(Some(other)) => format!("it sent {other:?}"),
        Ok(None) => "it closed the connection".into(),
        Err(e) => e.to_string(),
    };
    let hello = match tokio::time::timeout(timeout, wire::recv::<ToLeader>(&mut reader)).await {
        Ok(Ok(Some(ToLeader::Hello(hello)))) => hello,
        Ok(got) => return eprintln!("segzoo-launch: ignoring a connection from {peer} without a hello: {}", why(got)),
        Err(_) => {
            return eprintln!(
                "segzoo-launch: ignoring a connection from {peer}: no hello for {} s",
                timeout.as_secs_f64()
            )
        }
    };
    let id = hello.server_id.clone();
    let Ok(ours) = auth::challenge() else {
        return eprintln!("segzoo-launch: cannot read /dev/urandom for a challenge");
    };
    let challenge =
        ToFollower::Challenge { challenge: ours.clone(), proof: key.proof("leader", &hello.challenge, &id) };
    if tokio::time::timeout(LAST_WORDS, wire::send(&mut writer, &challenge)).await.is_err() {
        return eprintln!("segzoo-launch: ignoring a connection from {peer}: it does not read");
    }
    let proven = match tokio::time::timeout(timeout, wire::recv::<ToLeader>(&mut reader)).await {
        Ok(Ok(Some(ToLeader::Proof { proof }))) => key.verify("follower", &ours, &id, &proof),
        _ => false,
    };
    if !proven {
        eprintln!(
            "segzoo-launch: refused a connection from {peer} claiming to be server {id}: it did not prove the job key"
        );
        let reason = "it did not prove the job key (SEGZOO_JOB_KEY or --job-key-file, else the same rank table \
                      file on every server)"
            .to_string();
        let _ = tokio::time::timeout(LAST_WORDS, wire::send(&mut writer, &ToFollower::Refused { reason })).await;
        return;
    }
    let _ = to.send(Handshake { hello, reader, writer, peer });
}

impl Leader<'_> {
    fn joined_count(&self) -> usize {
        self.joined.iter().filter(|&&j| j).count()
    }

    fn say_joined(&self, with_missing: bool) {
        let (k, n) = (self.joined_count(), self.joined.len());
        let missing: Vec<&str> = self.missing().collect();
        if with_missing && !missing.is_empty() {
            eprintln!("segzoo-launch: {k} of {n} servers joined; waiting for {}", missing.join(", "));
        } else {
            eprintln!("segzoo-launch: {k} of {n} servers joined");
        }
    }

    fn missing(&self) -> impl Iterator<Item = &str> + '_ {
        self.o.ids.iter().zip(&self.joined).filter(|(_, &j)| !j).map(|(id, _)| id.as_str())
    }

    fn start_if_all_joined(&mut self) {
        if !self.started && self.joined.iter().all(|&j| j) {
            self.started = true;
            let out = self.hub.start();
            self.dispatch(out);
        }
    }

    /// Why `hello` cannot join, naming the mismatch; else the server's index.
    fn admit(&self, hello: &Hello) -> Result<usize, String> {
        let o = self.o;
        let id = &hello.server_id;
        let Some(index) = o.ids.iter().position(|s| s == id) else {
            return Err(format!("server {id} is not in the leader's rank table (servers: {})", o.ids.join(", ")));
        };
        if index == o.leader {
            return Err(format!("server {id} is the leader's own server"));
        }
        if !self.started && self.joined[index] {
            return Err(format!("server {id} has already joined"));
        }
        self.hub.may_join(index)?;
        if hello.world_size != o.world_size {
            return Err(format!(
                "world size {} in this server's rank table, {} in the leader's",
                hello.world_size, o.world_size
            ));
        }
        if hello.servers != o.ids.len() {
            return Err(format!(
                "{} servers in this server's rank table, {} in the leader's",
                hello.servers,
                o.ids.len()
            ));
        }
        if hello.max_restarts != o.max_restarts {
            return Err(format!(
                "--max-restarts {} on this server, {} on the leader",
                hello.max_restarts, o.max_restarts
            ));
        }
        if hello.min_servers != o.min_servers {
            return Err(format!("--min-servers {} on this server, {} on the leader", hello.min_servers, o.min_servers));
        }
        Ok(index)
    }

    async fn on_hello(&mut self, h: Handshake) {
        let Handshake { hello, reader, mut writer, peer } = h;
        let index = match self.admit(&hello) {
            Ok(index) => index,
            Err(reason) => {
                eprintln!("segzoo-launch: refused server {} ({peer}): {reason}", hello.server_id);
                let _ =
                    tokio::time::timeout(LAST_WORDS, wire::send(&mut writer, &ToFollower::Refused { reason })).await;
                return;
            }
        };
        match tokio::time::timeout(LAST_WORDS, wire::send(&mut writer, &ToFollower::Welcome)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return eprintln!("segzoo-launch: server {} ({peer}) left before its welcome: {e}", hello.server_id)
            }
            Err(_) => return eprintln!("segzoo-launch: server {} ({peer}) does not read its welcome", hello.server_id),
        }
        self.connect(index, reader, writer);
        self.joined[index] = true;
        if self.started {
            eprintln!("segzoo-launch: server {} joined the running job", hello.server_id);
            let out = self.hub.joined(index);
            self.dispatch(out);
            return;
        }
        self.say_joined(false);
        self.start_if_all_joined();
    }

    /// Run the admitted follower's read and write loops.
    fn connect(&mut self, index: usize, reader: BufReader<OwnedReadHalf>, writer: OwnedWriteHalf) {
        let (tx, rx) = unbounded_channel();
        self.followers[index] = Some(tx);
        self.connections.spawn(wire::write_loop(writer, rx, ToFollower::Command, ToFollower::Heartbeat));
        let incoming = self.incoming.clone();
        let timeout = self.o.heartbeat_timeout;
        self.connections.spawn(async move {
            let quit = wire::read_loop(reader, timeout, |message| {
                if let ToLeader::Report(r) = message {
                    let _ = incoming.send((index, Incoming::Report(r)));
                }
            })
            .await;
            let _ = incoming.send((index, Incoming::Lost(quit)));
        });
    }

    fn on_incoming(&mut self, server: usize, event: Incoming) {
        let out = match event {
            Incoming::Report(r) => self.hub.report(server, r),
            Incoming::Lost(quit) => {
                self.followers[server] = None;
                let reason = quit.describe(None);
                let id = &self.o.ids[server];
                let out = self.hub.lost(server, reason.clone());
                // Say what follows from it: a stop when it is the root cause.
                let then = match out.first() {
                    Some((_, Command::Stop { .. })) => "; stopping every server",
                    _ if !self.started => " before the start",
                    _ => "",
                };
                eprintln!("segzoo-launch: lost server {id} ({reason}){then}");
                out
            }
        };
        self.dispatch(out);
    }

    fn give_up(&mut self) {
        let missing = self.missing().map(str::to_string).collect();
        let waited_ms = u64::try_from(self.o.join_timeout.as_millis()).unwrap_or(u64::MAX);
        let out = self.hub.abandon(JobCause::NotJoined { missing, waited_ms });
        self.dispatch(out);
    }

    fn dispatch(&mut self, out: Out) {
        self.time_rejoin();
        for (server, command) in out {
            let last = matches!(command, Command::Finish { .. });
            if server == self.o.leader {
                let _ = self.local.send(Down::Command(command));
            } else if let Some(queue) = &self.followers[server] {
                let _ = queue.send(command);
                if last {
                    // Its writer sends what is queued, then closes.
                    self.followers[server] = None;
                }
            }
        }
    }

    /// Start or end the rejoin wait as the hub enters or leaves it.
    fn time_rejoin(&mut self) {
        match (self.hub.rejoining(), self.rejoin_deadline) {
            (true, None) => {
                let secs = self.o.rejoin_timeout.as_secs_f64();
                let waited = self.hub.awaited().join(", ");
                eprintln!("segzoo-launch: waiting up to {secs} s for {waited} to rejoin (--rejoin-timeout)");
                self.rejoin_deadline = Some(Instant::now() + self.o.rejoin_timeout);
            }
            (false, Some(_)) => self.rejoin_deadline = None,
            _ => {}
        }
    }

    /// Let every follower read its finish and close, for at most a few seconds.
    async fn drain(mut self) {
        self.followers.clear();
        let connections = &mut self.connections;
        let _ = tokio::time::timeout(LAST_WORDS, async { while connections.join_next().await.is_some() {} }).await;
    }
}
