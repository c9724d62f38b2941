//! Live changes as Server-Sent Events (§16).
//!
//! A GET of a collection or record that asks for `text/event-stream`
//! (`Accept`, `type=events`, or the `.events` extension) is answered with
//! a stream: `created`, `updated` and `deleted` events whose ids are sync
//! positions (§6.7), read from the database by the controller exactly as
//! a sync read would ([`Controller::changes`]). The stream starts from
//! `Last-Event-ID` (what `EventSource` sends when it reconnects), else
//! `timestamp=`, else now; a frame with only an `id:` moves the resume
//! position past changes the caller may not see, so a reconnect never
//! reads them again.
//!
//! Nothing is pushed into a buffer: after each read the stream waits for
//! a change signal ([`crate::store::Store::listen_changes`]: this
//! instance's commits at once, others' within the poll interval), a
//! heartbeat, the end of the caller's token, or shutdown. A client that
//! takes nothing for `stall_timeout` while events wait is dropped; it
//! resumes from the last id it got. Streams are capped per caller (429)
//! and per instance (503).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::config::LiveSettings;
use crate::controller::{Changes, Controller, Ctx};
use crate::error::ApiError;

/// Changes read at once: one statement's worth, a bounded frame batch.
const BATCH: u64 = 100;

/// Frames a stream holds ready for a slow client before it waits.
const QUEUE: usize = 16;

/// The media type of a live feed.
pub const EVENT_STREAM: &str = "text/event-stream";

/// This instance's open streams: caps, and the shutdown signal.
pub struct Streams {
    pub settings: LiveSettings,
    open: Arc<Semaphore>,
    per_caller: Mutex<HashMap<String, usize>>,
    closing: watch::Sender<bool>,
}

/// One open stream's place, given back when it ends.
pub struct Slot {
    streams: Arc<Streams>,
    caller: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .streams
            .per_caller
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.caller);
            }
        }
    }
}

impl Streams {
    pub fn new(settings: LiveSettings) -> Arc<Streams> {
        Arc::new(Streams {
            open: Arc::new(Semaphore::new(settings.max_streams)),
            per_caller: Mutex::new(HashMap::new()),
            closing: watch::Sender::new(false),
            settings,
        })
    }

    /// Takes a place for `caller`'s new stream, or refuses: 429 past the
    /// caller's cap, 503 past the instance's.
    pub fn open(self: &Arc<Self>, caller: &str) -> Result<Slot, ApiError> {
        let mut counts = self.per_caller.lock().unwrap_or_else(|p| p.into_inner());
        let mine = counts.get(caller).copied().unwrap_or(0);
        if mine >= self.settings.max_streams_per_caller {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_STREAMS",
                format!(
                    "You have {mine} live feeds open, the most one caller may; close one first."
                ),
            )
            .header(header::RETRY_AFTER, "5"));
        }
        let permit = self.open.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TOO_MANY_STREAMS",
                "This server follows as many live feeds as it may; try again shortly.",
            )
            .header(header::RETRY_AFTER, "5")
        })?;
        counts.insert(caller.to_string(), mine + 1);
        Ok(Slot {
            streams: self.clone(),
            caller: caller.to_string(),
            _permit: permit,
        })
    }

    /// Shutdown: every stream ends with an `end` event, so clients
    /// reconnect (to another instance) and resume.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Open streams on this instance.
    pub fn count(&self) -> usize {
        self.settings.max_streams - self.open.available_permits()
    }
}

/// What a stream needs to run on its own after the answer's head is sent.
pub struct Follow {
    pub controller: Arc<dyn Controller>,
    pub cx: Ctx,
    /// The record followed; `None`: the collection.
    pub id: Option<String>,
    pub slot: Slot,
    /// The bearer token the caller sent, checked again before each read:
    /// when it expires or is revoked, the stream ends saying so.
    pub token: Option<String>,
    pub tokens: Arc<crate::auth::tokens::Tokens>,
}

/// Where a stream starts: `Last-Event-ID`, else `timestamp=`, else now.
pub fn start_position(cx: &Ctx) -> Option<String> {
    cx.headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| cx.query_param("timestamp").map(str::to_string))
}

/// Reads the first changes (so a bad position, query or record is an
/// ordinary 4xx), then answers 200 with the stream.
pub async fn follow(f: Follow) -> Result<axum::response::Response, ApiError> {
    // A record's feed opens only on a record the caller may read (404
    // otherwise, as its GET); once open, its deletion is an event.
    if let Some(id) = &f.id {
        f.controller.fetch(&f.cx, id).await?;
    }
    let after = start_position(&f.cx);
    let settings = f.slot.streams.settings.clone();
    // Listening before the first read: a change committed meanwhile wakes
    // the stream (and is read, or found already read).
    let wake = f.cx.store.listen_changes(settings.poll_interval);
    let first = f
        .controller
        .changes(&f.cx, f.id.as_deref(), after.as_deref(), BATCH)
        .await?;
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let closing = f.slot.streams.closing.subscribe();
    tokio::spawn(run(f, first, tx, wake, closing, settings));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    let mut res = axum::response::Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx and friends: pass each event on at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

/// One SSE frame for a change.
fn event_frame(kind: &str, id: &str, data: &serde_json::Value) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"))
}

/// The stream's last frame: why it ends.
fn end_frame(reason: &str, detail: &str) -> Bytes {
    let data = serde_json::json!({"reason": reason, "detail": detail});
    Bytes::from(format!("event: end\ndata: {data}\n\n"))
}

/// Why a stream stops.
enum Stop {
    /// The client went away or stalled: nothing more can reach it.
    Gone,
    /// Tell the client, then stop.
    Say(&'static str, String),
}

async fn run(
    f: Follow,
    first: Changes,
    tx: mpsc::Sender<Bytes>,
    mut wake: watch::Receiver<u64>,
    mut closing: watch::Receiver<bool>,
    settings: LiveSettings,
) {
    let _slot = &f.slot;
    // EventSource reconnects after this many ms.
    let hello = Bytes::from_static(b"retry: 2000\n\n");
    let stop = async {
        send(&tx, hello, settings.stall_timeout).await?;
        let mut batch = first;
        let mut sent_position: Option<String> = None;
        loop {
            for c in &batch.changes {
                send(
                    &tx,
                    event_frame(c.kind.name(), &c.position, &c.data),
                    settings.stall_timeout,
                )
                .await?;
            }
            let last = batch.changes.last().map(|c| c.position.clone());
            // Past changes the caller may not see: move the resume
            // position without an event.
            if last.as_ref() != Some(&batch.position)
                && sent_position.as_ref() != Some(&batch.position)
            {
                let frame = Bytes::from(format!("id: {}\n\n", batch.position));
                send(&tx, frame, settings.stall_timeout).await?;
            }
            sent_position = Some(batch.position.clone());
            if !batch.more {
                wait(&f, &tx, &mut wake, &mut closing, &settings).await?;
            }
            let position = batch.position.clone();
            batch = loop {
                match f
                    .controller
                    .changes(&f.cx, f.id.as_deref(), Some(&position), BATCH)
                    .await
                {
                    Ok(b) => break b,
                    // The database away: keep the stream, try again
                    // (nothing is lost, the position stays).
                    Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                        tracing::debug!(error = %e.detail, "live feed read failed; retrying");
                        wait(&f, &tx, &mut wake, &mut closing, &settings).await?;
                    }
                    Err(e) => return Err(Stop::Say("refused", e.detail.to_string())),
                }
            };
        }
        #[allow(unreachable_code)]
        Ok::<(), Stop>(())
    };
    if let Err(Stop::Say(reason, detail)) = stop.await {
        let _ = tx
            .send_timeout(end_frame(reason, &detail), Duration::from_secs(1))
            .await;
    }
}

/// Sends `frame`, or gives up on a client that took nothing for `stall`.
async fn send(tx: &mpsc::Sender<Bytes>, frame: Bytes, stall: Duration) -> Result<(), Stop> {
    tx.send_timeout(frame, stall).await.map_err(|_| Stop::Gone)
}

/// Waits for a change, sending heartbeats meanwhile; ends the stream on
/// shutdown, a token that no longer holds, or a client that left.
async fn wait(
    f: &Follow,
    tx: &mpsc::Sender<Bytes>,
    wake: &mut watch::Receiver<u64>,
    closing: &mut watch::Receiver<bool>,
    settings: &LiveSettings,
) -> Result<(), Stop> {
    loop {
        if *closing.borrow() {
            return Err(Stop::Say(
                "shutdown",
                "The server is shutting down; reconnect to resume.".into(),
            ));
        }
        if let Some(token) = &f.token {
            if let Err(e) = f.tokens.verify(token, &f.cx.store).await {
                return Err(Stop::Say("unauthorized", e.detail.to_string()));
            }
        }
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    return Err(Stop::Gone);
                }
                return Ok(());
            }
            _ = closing.changed() => continue,
            _ = tx.closed() => return Err(Stop::Gone),
            _ = tokio::time::sleep(settings.heartbeat) => {
                send(tx, Bytes::from_static(b": heartbeat\n\n"), settings.stall_timeout).await?;
            }
        }
    }
}
