//! A follower joins the group: it connects to the leader (retrying until the join timeout,
//! since the leader may start later), says [`Hello`] with a challenge, checks the leader's
//! proof of the job key and proves it in turn (`auth.rs`), and once welcomed becomes a
//! [`Link`] whose commands come from the leader's hub and whose reports go back to it.
use crate::auth::{self, JobKey};
use crate::error::Error;
use crate::link::{Down, Link};
use crate::wire::{self, Hello, ToFollower, ToLeader};
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::unbounded_channel;
use tokio::time::Instant;

pub struct Options {
    /// `host:port` of the leader's group listener.
    pub addr: String,
    pub hello: Hello,
    pub join_timeout: Duration,
    pub heartbeat_timeout: Duration,
    pub key: JobKey,
}

/// Between two connection attempts.
const RETRY: Duration = Duration::from_millis(500);

/// Why one attempt to join did not succeed.
enum Attempt {
    /// The leader answered no: joining again would not help.
    Refused(String),
    /// Not there yet, or the connection failed: try again.
    Retry(String),
}

pub async fn join(o: &Options) -> Result<Link, Error> {
    eprintln!("segzoo-launch: joining the group at {}", o.addr);
    let deadline = Instant::now() + o.join_timeout;
    let (reader, writer) = loop {
        let why = match attempt(o, deadline).await {
            Ok(halves) => break halves,
            Err(Attempt::Refused(reason)) => return Err(Error::Refused { addr: o.addr.clone(), reason }),
            Err(Attempt::Retry(why)) => why,
        };
        if Instant::now() + RETRY > deadline {
            let waited = o.join_timeout.as_secs_f64();
            return Err(Error::CannotJoin { addr: o.addr.clone(), waited, last: why });
        }
        tokio::time::sleep(RETRY).await;
    };
    eprintln!("segzoo-launch: joined the group at {}", o.addr);
    let (down_tx, down_rx) = unbounded_channel();
    let (up_tx, up_rx) = unbounded_channel();
    let peer = format!("the leader at {}", o.addr);
    let timeout = o.heartbeat_timeout;
    tokio::spawn(async move {
        let quit = wire::read_loop(reader, timeout, |message| {
            if let ToFollower::Command(command) = message {
                let _ = down_tx.send(Down::Command(command));
            }
        })
        .await;
        let _ = down_tx.send(Down::Lost(quit.describe(Some(&peer))));
    });
    let writer = tokio::spawn(wire::write_loop(writer, up_rx, ToLeader::Report, ToLeader::Heartbeat));
    Ok(Link::new(up_tx, down_rx, writer))
}

/// Connect, say hello and read the answer, within what is left of the join timeout. The
/// reader keeps what the leader sent after its welcome.
async fn attempt(o: &Options, deadline: Instant) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf), Attempt> {
    let left = deadline.saturating_duration_since(Instant::now()).max(RETRY);
    let stream = match tokio::time::timeout(left, TcpStream::connect(&o.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Attempt::Retry(e.to_string())),
        Err(_) => return Err(Attempt::Retry("connecting timed out".into())),
    };
    // Stop and restart commands are tiny: send them at once.
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let retry = |e: std::io::Error| Attempt::Retry(e.to_string());
    let ours = auth::challenge().map_err(retry)?;
    let hello = Hello { challenge: ours.clone(), ..o.hello.clone() };
    let id = hello.server_id.clone();
    wire::send(&mut writer, &ToLeader::Hello(hello)).await.map_err(retry)?;
    let mut reader = BufReader::new(reader);
    let answer = tokio::time::timeout(o.heartbeat_timeout, wire::recv::<ToFollower>(&mut reader)).await;
    let theirs = match answer {
        Ok(Ok(Some(ToFollower::Challenge { challenge, proof }))) if o.key.verify("leader", &ours, &id, &proof) => {
            challenge
        }
        Ok(Ok(Some(ToFollower::Challenge { .. }))) => {
            let reason = "it did not prove the job key: it leads another job (another rank table, SEGZOO_JOB_KEY or \
                          --job-key-file)";
            return Err(Attempt::Refused(reason.into()));
        }
        Ok(Ok(Some(ToFollower::Refused { reason }))) => return Err(Attempt::Refused(reason)),
        Ok(Ok(Some(other))) => return Err(Attempt::Retry(format!("unexpected answer {other:?}"))),
        Ok(Ok(None)) => return Err(Attempt::Retry("the leader closed the connection".into())),
        Ok(Err(e)) => return Err(retry(e)),
        Err(_) => return Err(Attempt::Retry("no answer to hello".into())),
    };
    let proof = ToLeader::Proof { proof: o.key.proof("follower", &theirs, &id) };
    wire::send(&mut writer, &proof).await.map_err(retry)?;
    let answer = tokio::time::timeout(o.heartbeat_timeout, wire::recv::<ToFollower>(&mut reader)).await;
    match answer {
        Ok(Ok(Some(ToFollower::Welcome))) => {}
        Ok(Ok(Some(ToFollower::Refused { reason }))) => return Err(Attempt::Refused(reason)),
        Ok(Ok(Some(other))) => return Err(Attempt::Retry(format!("unexpected answer {other:?}"))),
        Ok(Ok(None)) => return Err(Attempt::Retry("the leader closed the connection".into())),
        Ok(Err(e)) => return Err(retry(e)),
        Err(_) => return Err(Attempt::Retry("no answer to hello".into())),
    }
    Ok((reader, writer))
}
