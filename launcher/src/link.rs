//! A launcher's line to the hub, the same whether the hub runs in this process (one-server
//! jobs, and the leader's own server) or on the leader across TCP: reports go up, commands
//! come down, and a line that breaks reads as [`Down::Lost`].
use crate::hub::{Command, Report};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

/// What a launcher hears from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    Command(Command),
    /// The hub cannot be reached any more; the text says why.
    Lost(String),
}

pub struct Link {
    up: UnboundedSender<Report>,
    down: UnboundedReceiver<Down>,
    /// The task that writes reports to the leader, on a follower: waited for on close.
    writer: Option<JoinHandle<()>>,
}

/// The hub's end of an in-process link.
pub struct HubEnd {
    pub up: UnboundedReceiver<Report>,
    pub down: UnboundedSender<Down>,
}

pub fn in_process() -> (Link, HubEnd) {
    let (up_tx, up_rx) = unbounded_channel();
    let (down_tx, down_rx) = unbounded_channel();
    (Link { up: up_tx, down: down_rx, writer: None }, HubEnd { up: up_rx, down: down_tx })
}

impl Link {
    pub fn new(up: UnboundedSender<Report>, down: UnboundedReceiver<Down>, writer: JoinHandle<()>) -> Link {
        Link { up, down, writer: Some(writer) }
    }

    /// Queue a report; a hub that is gone is noticed by [`Link::recv`].
    pub fn send(&self, report: Report) {
        let _ = self.up.send(report);
    }

    pub async fn recv(&mut self) -> Down {
        self.down.recv().await.unwrap_or_else(|| Down::Lost("the hub stopped".into()))
    }

    /// Let the reports still queued reach the leader (a follower's last words), for at
    /// most a few seconds.
    pub async fn close(self) {
        let Link { up, writer, .. } = self;
        drop(up);
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(Duration::from_secs(3), writer).await;
        }
    }
}
