//! IDLE (RFC 2177, RFC 9051 §6.3.13): the client waits and the server pushes changes
//! to the selected mailbox the moment they are committed.
//!
//! Changes made in this process arrive on the store's change bus and go out at once.
//! Writers in other processes (`tern import` on the same data folder) are not on the
//! bus; a check every ten seconds catches those.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::session::{Reply, Result, Session, State};

const POLL: Duration = Duration::from_secs(10);

pub async fn idle(s: &mut Session) -> Result {
    s.sync(true, false).await?;
    s.out.raw(b"+ idling").crlf();
    s.flush().await.map_err(|_| Reply::already_sent())?;
    let selected = s.account().is_some() && matches!(s.state, State::Selected(..));
    let limit = s.server.config.idle_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let Some(conn) = s.conn.as_mut() else {
            return Err(Reply::already_sent());
        };
        enum Wake {
            Line(Option<Vec<u8>>),
            Change(bool),
            Poll,
            Shutdown,
            Timeout,
        }
        let mine = match &s.state {
            State::Selected(_, view) => Some(view.id()),
            _ => None,
        };
        let wake = tokio::select! {
            line = s.framer.next_line(conn) => Wake::Line(line.ok().flatten()),
            event = s.bus.recv() => Wake::Change(match event {
                Ok(e) => Some(e.mailbox) == mine,
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => false,
            }),
            () = tokio::time::sleep(POLL), if selected => Wake::Poll,
            () = s.ctx.shutdown.triggered() => Wake::Shutdown,
            () = tokio::time::sleep_until(deadline) => Wake::Timeout,
        };
        match wake {
            Wake::Line(None) => return Err(Reply::already_sent()),
            Wake::Line(Some(line)) => {
                if line.eq_ignore_ascii_case(b"DONE") {
                    s.sync(true, false).await?;
                    return Ok(Reply::ok("IDLE terminated"));
                }
                return Err(Reply::bad("Expected DONE to end IDLE"));
            }
            Wake::Change(ours) => {
                if ours && let State::Selected(_, view) = &mut s.state {
                    view.mark_dirty();
                }
                s.sync(true, false).await?;
            }
            Wake::Poll => s.sync(true, true).await?,
            Wake::Shutdown => {
                s.out
                    .untagged("BYE [UNAVAILABLE] Server shutting down; reconnect shortly");
                s.state = State::Logout;
                let _ = s.flush().await;
                return Err(Reply::already_sent());
            }
            Wake::Timeout => {
                s.out.untagged("BYE Autologout; idle for too long");
                s.state = State::Logout;
                let _ = s.flush().await;
                return Err(Reply::already_sent());
            }
        }
        s.flush().await.map_err(|_| Reply::already_sent())?;
    }
}
