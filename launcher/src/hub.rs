//! The job's one decision maker: [`Hub`], a state machine with no sockets and no clock. It
//! hears every server's [`Report`]s (the leader's own server through in-process channels,
//! the others over TCP; a one-server job has only the first), servers joining and being
//! lost, and the end of a rejoin wait, and answers with the [`Command`]s each server must
//! follow. The members of a generation start, stop and restart together, and every
//! launcher ends with the same code and summary.
//!
//! Rules: the first cause of a generation is the root cause and stops every member; once
//! every member has ended the generation:
//! - a signal to any launcher wins: no restart, 128 + signal everywhere;
//! - success (no cause) finishes with 0;
//! - a change of membership (a member lost, a server of the table joined) re-forms the
//!   job with the servers present, renumbering the ranks (`plan.rs`), when at least
//!   `min_servers` remain; after a loss it first waits for the lost servers to come back,
//!   until the leader says the rejoin timeout is over. Fewer than `min_servers`: the job
//!   fails naming the lost server. Membership changes do not use up `--max-restarts`;
//! - a worker's failure with restarts left restarts the same members;
//! - otherwise the job finishes with the root cause's code and summary.
//!
//! The summary of a job of several generations lists each: members, world size, the steps
//! its workers were seen at, and why it ended.
use crate::cause::JobCause;
use serde::{Deserialize, Serialize};

/// From a server's launcher to the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// This server's first cause of the generation: sent at once, before its workers have
    /// all stopped, so that the others stop early too.
    Failed { generation: u32, cause: JobCause },
    /// Every local worker of the generation has exited. `ok`: all exited 0 on their own.
    /// `detail`: the summary lines of this server's own failed rank (its error file or
    /// last log lines), which only that server can read. `steps`: the first and last
    /// training step its workers' heartbeats showed.
    Ended {
        generation: u32,
        ok: bool,
        detail: Option<String>,
        #[serde(default)]
        steps: Option<(u64, u64)>,
    },
}

/// From the hub to a server's launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Start every local worker with `SEGZOO_LAUNCH_RESTART=<generation>`, ranked among
    /// `members` (server indices, in table order).
    Start { generation: u32, members: Vec<usize> },
    /// Stop the local workers: the job is ending, restarting or re-forming because of `cause`.
    Stop { generation: u32, cause: JobCause },
    /// The job is over: print `summary` and exit with `code`.
    Finish { code: u8, summary: String },
}

/// Where the job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for every server to join; nothing has started.
    Joining,
    Running,
    /// Between generations, waiting for lost servers to come back.
    Rejoining,
    Finished,
}

/// What the hub knows of one server.
#[derive(Debug, Clone, Default)]
struct ServerState {
    /// Its launcher is connected (admitted and not lost).
    present: bool,
    /// It takes part in the current generation.
    member: bool,
    ended: bool,
    ok: bool,
    detail: Option<String>,
    steps: Option<(u64, u64)>,
    /// Why it was lost, until it comes back.
    lost: Option<String>,
}

/// One generation, for the summary.
#[derive(Debug, Clone)]
struct Generation {
    members: Vec<usize>,
    steps: Option<(u64, u64)>,
    ended: String,
}

pub struct Hub {
    /// Every server's id, in table order: the index is the server's number everywhere.
    ids: Vec<String>,
    /// Each server's devices (ranks).
    devices: Vec<usize>,
    max_restarts: u32,
    min_servers: usize,
    phase: Phase,
    generation: u32,
    restarts: u32,
    servers: Vec<ServerState>,
    /// The generation's first cause and the server it came from.
    root: Option<(usize, JobCause)>,
    /// The first signal a launcher received, which decides the end whatever came first.
    signal: Option<JobCause>,
    history: Vec<Generation>,
    /// Members of the last generation lost and not back yet (while rejoining).
    awaited: Vec<usize>,
}

/// Commands to send: (server index, command).
pub type Out = Vec<(usize, Command)>;

impl Hub {
    /// A hub for the servers `ids` with `devices` each; `min_servers` (at most every
    /// server) is how few may go on after a loss.
    pub fn new(ids: Vec<String>, devices: Vec<usize>, max_restarts: u32, min_servers: usize) -> Hub {
        let n = ids.len();
        let mut servers = vec![ServerState::default(); n];
        servers.iter_mut().for_each(|s| s.present = true);
        Hub {
            ids,
            devices,
            max_restarts,
            min_servers: min_servers.clamp(1, n.max(1)),
            phase: Phase::Joining,
            generation: 0,
            restarts: 0,
            servers,
            root: None,
            signal: None,
            history: Vec::new(),
            awaited: Vec::new(),
        }
    }

    pub fn finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Between generations, waiting for lost servers (the leader times the wait).
    pub fn rejoining(&self) -> bool {
        self.phase == Phase::Rejoining
    }

    /// The servers waited for while rejoining.
    pub fn awaited(&self) -> Vec<&str> {
        self.awaited.iter().map(|&i| self.ids[i].as_str()).collect()
    }

    /// Whether the job has started (generation 0 or later).
    pub fn started(&self) -> bool {
        self.phase != Phase::Joining
    }

    /// Whether server `index` may join now: before the start, or (re)joining a running job
    /// when its launcher is not connected.
    pub fn may_join(&self, index: usize) -> Result<(), String> {
        match self.phase {
            Phase::Finished => Err("the job has finished".into()),
            Phase::Joining => Ok(()),
            _ if self.servers[index].present => Err(format!("server {} is already in the job", self.ids[index])),
            _ => Ok(()),
        }
    }

    fn multi(&self) -> bool {
        self.ids.len() > 1
    }

    fn elastic(&self) -> bool {
        self.min_servers < self.ids.len()
    }

    /// Every server has joined: start generation 0 everywhere.
    pub fn start(&mut self) -> Out {
        if self.phase != Phase::Joining {
            return Vec::new();
        }
        self.phase = Phase::Running;
        self.begin_generation()
    }

    /// End the job before it started (the join timeout ran out).
    pub fn abandon(&mut self, cause: JobCause) -> Out {
        if self.phase != Phase::Joining {
            return Vec::new();
        }
        self.finish(cause.exit_code(), cause.headline(self.multi()))
    }

    pub fn report(&mut self, server: usize, report: Report) -> Out {
        match report {
            Report::Failed { generation, cause } => self.failed(server, generation, cause),
            Report::Ended { generation, ok, detail, steps } => self.ended(server, generation, ok, detail, steps),
        }
    }

    /// The launcher of server `index` joined a started job (`may_join` said it may): it
    /// takes part from the next generation, which a running one is stopped for.
    pub fn joined(&mut self, index: usize) -> Out {
        if self.may_join(index).is_err() || self.phase == Phase::Joining {
            return Vec::new();
        }
        let s = &mut self.servers[index];
        (s.present, s.lost) = (true, None);
        self.awaited.retain(|&i| i != index);
        match self.phase {
            Phase::Running if !self.servers[index].member => {
                let cause = JobCause::Joined { server: self.ids[index].clone() };
                self.set_root(index, cause)
            }
            Phase::Rejoining if self.awaited.is_empty() => self.next_generation(),
            _ => Vec::new(),
        }
    }

    /// The rejoin timeout is over: go on with the servers present.
    pub fn rejoin_expired(&mut self) -> Out {
        if self.phase != Phase::Rejoining {
            return Vec::new();
        }
        self.next_generation()
    }

    /// The server's connection closed or went silent (or the leader's own side stopped).
    pub fn lost(&mut self, server: usize, reason: String) -> Out {
        if self.phase == Phase::Finished || !self.servers[server].present {
            return Vec::new();
        }
        let s = &mut self.servers[server];
        (s.present, s.lost) = (false, Some(reason.clone()));
        let cause = JobCause::Lost { server: self.ids[server].clone(), reason };
        match self.phase {
            Phase::Joining => self.finish(cause.exit_code(), cause.headline(self.multi())),
            Phase::Rejoining if self.present() < self.min_servers => self.too_few(cause),
            Phase::Running if self.servers[server].member => {
                let s = &mut self.servers[server];
                (s.ended, s.ok) = (true, false);
                let mut out = self.set_root(server, cause);
                out.extend(self.decide());
                out
            }
            _ => Vec::new(),
        }
    }

    fn present(&self) -> usize {
        self.servers.iter().filter(|s| s.present).count()
    }

    fn failed(&mut self, server: usize, generation: u32, cause: JobCause) -> Out {
        match self.phase {
            Phase::Finished => Vec::new(),
            // Before the start nothing runs that could be stopped: end at once.
            Phase::Joining => self.finish(cause.exit_code(), cause.headline(self.multi())),
            // Between generations only a signal matters: it ends the job.
            Phase::Rejoining if matches!(cause, JobCause::Signal { .. }) => {
                let summary = cause.headline(self.multi()) + &self.generations();
                self.finish(cause.exit_code(), summary)
            }
            Phase::Rejoining => Vec::new(),
            Phase::Running if generation != self.generation => Vec::new(),
            Phase::Running => {
                if matches!(cause, JobCause::Signal { .. }) && self.signal.is_none() {
                    self.signal = Some(cause.clone());
                }
                self.set_root(server, cause)
            }
        }
    }

    /// The first cause of the generation stops every member; later ones change nothing.
    fn set_root(&mut self, server: usize, cause: JobCause) -> Out {
        if self.root.is_some() {
            return Vec::new();
        }
        self.root = Some((server, cause.clone()));
        self.to_members(Command::Stop { generation: self.generation, cause })
    }

    fn ended(
        &mut self,
        server: usize,
        generation: u32,
        ok: bool,
        detail: Option<String>,
        steps: Option<(u64, u64)>,
    ) -> Out {
        let s = &mut self.servers[server];
        if self.phase != Phase::Running || generation != self.generation || s.ended || !s.member {
            return Vec::new();
        }
        (s.ended, s.ok, s.detail, s.steps) = (true, ok, detail, steps);
        self.decide()
    }

    /// Once every member has ended the generation: finish, restart or re-form.
    fn decide(&mut self) -> Out {
        if !self.servers.iter().filter(|s| s.member).all(|s| s.ended) {
            return Vec::new();
        }
        let cause = self.signal.clone().or_else(|| self.root.as_ref().map(|(_, c)| c.clone()));
        self.record(cause.as_ref().map_or_else(|| "finished".to_string(), |c| c.describe(self.multi())));
        let Some((root_server, root)) = self.root.clone() else {
            if let Some(i) = self.servers.iter().position(|s| s.member && !s.ok) {
                // Cannot happen with this launcher: a server that did not succeed reports why.
                let summary = format!("segzoo-launch: job failed: server {} failed without a cause\n", self.ids[i]);
                return self.finish(1, summary);
            }
            let summary = self.generations();
            return self.finish(0, summary);
        };
        if let Some(signal) = &self.signal {
            let summary = signal.headline(self.multi()) + &self.generations();
            return self.finish(signal.exit_code(), summary);
        }
        let lost: Vec<usize> =
            (0..self.ids.len()).filter(|&i| self.servers[i].member && !self.servers[i].present).collect();
        let grown = self.servers.iter().any(|s| s.present && !s.member);
        if (!lost.is_empty() || grown) && self.elastic() {
            if self.present() < self.min_servers {
                let cause = match (&root, lost.first()) {
                    (JobCause::Lost { .. }, _) | (_, None) => root.clone(),
                    (_, Some(&first)) => {
                        let reason = self.servers[first].lost.clone().unwrap_or_default();
                        JobCause::Lost { server: self.ids[first].clone(), reason }
                    }
                };
                return self.too_few(cause);
            }
            if lost.is_empty() {
                return self.next_generation();
            }
            self.phase = Phase::Rejoining;
            self.awaited = lost;
            return Vec::new();
        }
        if root.restartable() && lost.is_empty() && self.restarts < self.max_restarts {
            self.restarts += 1;
            return self.next_generation();
        }
        let mut summary = root.headline(self.multi());
        if matches!(root, JobCause::Rank { .. }) {
            summary += self.servers[root_server].detail.as_deref().unwrap_or_default();
        }
        for (i, s) in self.servers.iter().enumerate() {
            // The root cause already names a server lost because of it.
            let named = i == root_server && matches!(root, JobCause::Lost { .. } | JobCause::Launcher { .. });
            if let (Some(reason), false) = (&s.lost, named) {
                summary += &format!("segzoo-launch: also lost server {} ({reason})\n", self.ids[i]);
            }
        }
        summary += &self.generations();
        self.finish(root.exit_code(), summary)
    }

    /// Fewer than `min_servers` remain after `cause`: the job fails.
    fn too_few(&mut self, cause: JobCause) -> Out {
        let mut summary = cause.headline(self.multi());
        summary += &format!(
            "segzoo-launch: {} of {} servers remain, fewer than --min-servers {}\n",
            self.present(),
            self.ids.len(),
            self.min_servers
        );
        summary += &self.generations();
        self.finish(cause.exit_code(), summary)
    }

    /// Close the current generation in the history.
    fn record(&mut self, ended: String) {
        let members: Vec<usize> = (0..self.ids.len()).filter(|&i| self.servers[i].member).collect();
        let seen = members.iter().filter_map(|&i| self.servers[i].steps);
        let steps = seen.reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
        self.history.push(Generation { members, steps, ended });
    }

    /// The summary's list of generations, when there were several.
    fn generations(&self) -> String {
        if self.history.len() < 2 {
            return String::new();
        }
        let mut text = format!("segzoo-launch: {} generations:\n", self.history.len());
        for (k, g) in self.history.iter().enumerate() {
            let ids: Vec<&str> = g.members.iter().map(|&i| self.ids[i].as_str()).collect();
            let world: usize = g.members.iter().map(|&i| self.devices[i]).sum();
            let noun = if ids.len() == 1 { "server" } else { "servers" };
            let steps = g.steps.map_or(String::new(), |(a, b)| format!(", steps {a}-{b}"));
            text +=
                &format!("    generation {k}: {noun} {} (world size {world}){steps}: {}\n", ids.join(", "), g.ended);
        }
        text
    }

    /// Start the next generation with the servers present.
    fn next_generation(&mut self) -> Out {
        self.generation += 1;
        self.phase = Phase::Running;
        self.begin_generation()
    }

    fn begin_generation(&mut self) -> Out {
        self.root = None;
        self.awaited.clear();
        for s in &mut self.servers {
            let present = s.present;
            *s = ServerState {
                present,
                member: present,
                lost: s.lost.take().filter(|_| !present),
                ..Default::default()
            };
        }
        let members: Vec<usize> = (0..self.ids.len()).filter(|&i| self.servers[i].member).collect();
        self.to_members(Command::Start { generation: self.generation, members })
    }

    fn finish(&mut self, code: u8, summary: String) -> Out {
        self.phase = Phase::Finished;
        (0..self.ids.len())
            .filter(|&i| self.servers[i].present)
            .map(|i| (i, Command::Finish { code, summary: summary.clone() }))
            .collect()
    }

    /// `command` for every member still present.
    fn to_members(&self, command: Command) -> Out {
        (0..self.ids.len())
            .filter(|&i| self.servers[i].member && self.servers[i].present)
            .map(|i| (i, command.clone()))
            .collect()
    }
}
