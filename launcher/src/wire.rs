//! The launchers' group on the wire: newline-delimited JSON over TCP, a follower's
//! [`Hello`], the messages each way, and the two loops every connection runs — one writes
//! queued messages and a heartbeat every second, the other reads until the peer closes,
//! goes silent for the heartbeat timeout, or sends something unreadable.
use crate::hub::{Command, Report};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::UnboundedReceiver;

/// Between two heartbeats; the heartbeat timeout must be longer.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A longer line is not a message of ours.
const MAX_LINE: u64 = 1 << 20;

/// A follower's first message: who it is and what its table says, so that the leader can
/// refuse a launcher started with another table or options, and its challenge to the
/// leader (`auth.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub server_id: String,
    pub world_size: usize,
    pub servers: usize,
    pub max_restarts: u32,
    pub min_servers: usize,
    pub challenge: String,
}

/// Follower → leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToLeader {
    Hello(Hello),
    /// The answer to the leader's challenge.
    Proof {
        proof: String,
    },
    Heartbeat,
    Report(Report),
}

/// Leader → follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToFollower {
    /// The leader's answer to the follower's challenge, and its own challenge.
    Challenge {
        challenge: String,
        proof: String,
    },
    Welcome,
    /// The follower is not part of this job; the reason names the mismatch.
    Refused {
        reason: String,
    },
    Heartbeat,
    Command(Command),
}

pub async fn send<T: Serialize>(w: &mut (impl AsyncWrite + Unpin), message: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_string(message).map_err(std::io::Error::other)?;
    line.push('\n');
    w.write_all(line.as_bytes()).await?;
    w.flush().await
}

/// The next message; `None` when the peer closed the connection.
pub async fn recv<T: DeserializeOwned>(r: &mut BufReader<impl AsyncRead + Unpin>) -> std::io::Result<Option<T>> {
    let mut line = String::new();
    let n = (&mut *r).take(MAX_LINE).read_line(&mut line).await?;
    if n == 0 || !line.ends_with('\n') {
        // Closed, possibly in the middle of a line: what came is not a message.
        return if n as u64 == MAX_LINE {
            Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "message too long"))
        } else {
            Ok(None)
        };
    }
    serde_json::from_str(&line).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Why a connection's read loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quit {
    Closed,
    /// Nothing came for this long (heartbeats included).
    Silent(Duration),
    Broken(String),
}

impl Quit {
    /// `peer` names the other end ("the leader at 10.0.0.1:29501"); without it the
    /// caller's message names it.
    pub fn describe(&self, peer: Option<&str>) -> String {
        match (self, peer) {
            (Quit::Closed, None) => "connection closed".into(),
            (Quit::Closed, Some(p)) => format!("connection to {p} closed"),
            (Quit::Silent(t), None) => format!("no heartbeat for {} s", t.as_secs_f64()),
            (Quit::Silent(t), Some(p)) => format!("no heartbeat from {p} for {} s", t.as_secs_f64()),
            (Quit::Broken(e), None) => format!("connection failed: {e}"),
            (Quit::Broken(e), Some(p)) => format!("connection to {p} failed: {e}"),
        }
    }
}

/// Hand every message to `deliver` until the connection ends; any message, heartbeats
/// too, proves the peer alive for another `timeout`.
pub async fn read_loop<T: DeserializeOwned>(
    mut reader: BufReader<impl AsyncRead + Unpin>,
    timeout: Duration,
    mut deliver: impl FnMut(T),
) -> Quit {
    loop {
        match tokio::time::timeout(timeout, recv::<T>(&mut reader)).await {
            Err(_) => return Quit::Silent(timeout),
            Ok(Ok(None)) => return Quit::Closed,
            Ok(Err(e)) => return Quit::Broken(e.to_string()),
            Ok(Ok(Some(message))) => deliver(message),
        }
    }
}

/// Write every queued message (wrapped by `wrap`) and `heartbeat` every [`HEARTBEAT`];
/// when the queue is closed and drained, shut the writing side so the peer reads the end
/// after the last message.
pub async fn write_loop<T, M: Serialize>(
    mut writer: impl AsyncWrite + Unpin,
    mut queue: UnboundedReceiver<T>,
    wrap: fn(T) -> M,
    heartbeat: M,
) {
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sent = tokio::select! {
            // Messages first: a heartbeat never delays a stop.
            biased;
            next = queue.recv() => match next {
                Some(message) => send(&mut writer, &wrap(message)).await,
                None => break,
            },
            _ = beat.tick() => send(&mut writer, &heartbeat).await,
        };
        // A broken connection is noticed by the read loop.
        if sent.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::JobCause;

    #[tokio::test(flavor = "current_thread")]
    async fn messages_survive_the_trip_and_the_end_reads_as_closed() {
        let (a, b) = tokio::io::duplex(4096);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cause = JobCause::Signal { server: "10.0.0.2".into(), signal: 15 };
        tx.send(Command::Stop { generation: 2, cause: cause.clone() }).expect("queued");
        tx.send(Command::Finish { code: 143, summary: "two\nlines\n".into() }).expect("queued");
        drop(tx);
        let writer = tokio::spawn(write_loop(a, rx, ToFollower::Command, ToFollower::Heartbeat));
        let mut got = Vec::new();
        let quit = read_loop(BufReader::new(b), Duration::from_secs(5), |m: ToFollower| got.push(m)).await;
        writer.await.expect("writer ends");
        assert_eq!(quit, Quit::Closed);
        let commands: Vec<_> = got.into_iter().filter(|m| *m != ToFollower::Heartbeat).collect();
        assert_eq!(
            commands,
            vec![
                ToFollower::Command(Command::Stop { generation: 2, cause }),
                ToFollower::Command(Command::Finish { code: 143, summary: "two\nlines\n".into() }),
            ]
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_silent_peer_is_lost_after_the_timeout() {
        let (_keep, b) = tokio::io::duplex(64);
        let quit = read_loop(BufReader::new(b), Duration::from_secs(3), |_: ToLeader| {}).await;
        assert_eq!(quit, Quit::Silent(Duration::from_secs(3)));
        assert_eq!(quit.describe(Some("the leader at h:1")), "no heartbeat from the leader at h:1 for 3 s");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn garbage_breaks_the_connection_with_the_reason() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"{\"Nope\":1}\n").await.expect("write");
        let quit = read_loop(BufReader::new(b), Duration::from_secs(5), |_: ToLeader| {}).await;
        assert!(matches!(&quit, Quit::Broken(e) if e.contains("Nope")), "{quit:?}");
    }

    #[test]
    fn ends_read_as_messages_say_them() {
        assert_eq!(Quit::Closed.describe(None), "connection closed");
        assert_eq!(Quit::Closed.describe(Some("the leader at h:1")), "connection to the leader at h:1 closed");
        assert_eq!(Quit::Silent(Duration::from_secs(10)).describe(None), "no heartbeat for 10 s");
    }
}
