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
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit, Semaphore};

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
    /// The shared readers, by what their followers see.
    groups: Mutex<HashMap<GroupKey, Shared>>,
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
            groups: Mutex::new(HashMap::new()),
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

    /// Shared readers running: one per feed and caller followed.
    pub fn readers(&self) -> usize {
        self.groups.lock().unwrap_or_else(|p| p.into_inner()).len()
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
    let streams = f.slot.streams.clone();
    let first = f
        .controller
        .changes(&f.cx, f.id.as_deref(), after.as_deref(), BATCH)
        .await?;
    // The group's readers may already stand past this first read: then
    // the follower reads for itself up to now before taking its batches.
    let (group, level) = streams.join(&f, &first.position);
    let behind = !not_after(&level, &first.position);
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let closing = streams.closing.subscribe();
    tokio::spawn(run(
        f,
        first,
        behind,
        tx,
        group,
        closing,
        streams.settings.clone(),
    ));
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

/// Followers who see the same thing — one feed (route, record, query)
/// for one caller (identity, base URL, version) — share one reader: a
/// change is read and encoded once, however many follow it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    controller: usize,
    id: Option<String>,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
    caller: String,
    base_url: String,
    version: Option<String>,
}

impl GroupKey {
    fn of(f: &Follow) -> GroupKey {
        GroupKey {
            controller: Arc::as_ptr(&f.controller) as *const () as usize,
            id: f.id.clone(),
            params: f.cx.params.clone(),
            // The position is each follower's own.
            query: f
                .cx
                .query
                .iter()
                .filter(|(k, _)| k != "timestamp")
                .cloned()
                .collect(),
            caller: format!("{:?}", f.cx.identity),
            base_url: f.cx.base_url.clone(),
            version: f.cx.version.clone(),
        }
    }
}

/// What a group's reader read: the changes after `from` up to `to`, as
/// frames (position, bytes) encoded once for every follower.
struct Batch {
    from: String,
    to: String,
    frames: Vec<(String, Bytes)>,
}

/// A follower's end of its group's batches.
type Group = broadcast::Receiver<Arc<Batch>>;

/// A group as the hub keeps it: where its reader stands (moved before
/// each batch is sent, under the same lock, so a follower that joins
/// either gets the batch or sees the position past it), and its batches.
struct Shared {
    position: Arc<Mutex<String>>,
    tx: broadcast::Sender<Arc<Batch>>,
}

/// Batches a slow follower may fall behind before it reads for itself.
const GROUP_QUEUE: usize = 64;

impl Streams {
    /// Joins `f`'s group — starting its reader at `position`, where `f`
    /// stands, if it has none — and says where the group stands.
    fn join(self: &Arc<Self>, f: &Follow, position: &str) -> (Group, String) {
        let key = GroupKey::of(f);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = groups.get(&key) {
            let rx = g.tx.subscribe();
            let at = g.position.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return (rx, at);
        }
        let (tx, rx) = broadcast::channel(GROUP_QUEUE);
        let shared = Arc::new(Mutex::new(position.to_string()));
        groups.insert(
            key.clone(),
            Shared {
                position: shared.clone(),
                tx: tx.clone(),
            },
        );
        let reader = Reader {
            streams: self.clone(),
            key,
            controller: f.controller.clone(),
            cx: f.cx.clone(),
            id: f.id.clone(),
            position: shared,
            tx,
        };
        tokio::spawn(reader.run());
        (rx, position.to_string())
    }
}

struct Reader {
    streams: Arc<Streams>,
    key: GroupKey,
    controller: Arc<dyn Controller>,
    cx: Ctx,
    id: Option<String>,
    position: Arc<Mutex<String>>,
    tx: broadcast::Sender<Arc<Batch>>,
}

impl Reader {
    /// Leaves the hub when no follower is left (under the hub's lock, so
    /// a follower never joins a group that is going away).
    fn alone(&self) -> bool {
        let mut groups = self
            .streams
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.tx.receiver_count() > 0 {
            return false;
        }
        groups.remove(&self.key);
        true
    }

    /// Leaves the hub whoever still follows (they read for themselves).
    fn leave(&self) {
        let mut groups = self
            .streams
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        groups.remove(&self.key);
    }

    async fn run(self) {
        let settings = &self.streams.settings;
        let mut wake = self.cx.store.listen_changes(settings.poll_interval);
        let mut closing = self.streams.closing.subscribe();
        loop {
            let from = self
                .position
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let read = self
                .controller
                .changes(&self.cx, self.id.as_deref(), Some(&from), BATCH)
                .await;
            let more = match read {
                Ok(b) => {
                    if from != b.position || !b.changes.is_empty() {
                        let frames = b
                            .changes
                            .iter()
                            .map(|c| {
                                let frame = event_frame(c.kind.name(), &c.position, &c.data);
                                (c.position.clone(), frame)
                            })
                            .collect();
                        let mut at = self.position.lock().unwrap_or_else(|p| p.into_inner());
                        *at = b.position.clone();
                        let _ = self.tx.send(Arc::new(Batch {
                            from,
                            to: b.position,
                            frames,
                        }));
                    }
                    b.more
                }
                // Anything else (the record's parent gone, …): every
                // follower reads for itself, and hears why.
                Err(e) if e.status != StatusCode::SERVICE_UNAVAILABLE => {
                    self.leave();
                    return;
                }
                // The database away: the position stays; try again.
                Err(_) => false,
            };
            if more {
                continue;
            }
            tokio::select! {
                changed = wake.changed() => if changed.is_err() { return },
                _ = closing.changed() => {}
                _ = tokio::time::sleep(settings.heartbeat) => {}
            }
            if *closing.borrow() {
                self.leave();
                return;
            }
            if self.alone() {
                return;
            }
        }
    }
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

/// Positions in order: `time~key`, or a whole `time` (after every key).
fn position_key(p: &str) -> (&str, i64) {
    match p.split_once('~') {
        Some((t, k)) => (t, k.parse().unwrap_or(i64::MAX)),
        None => (p, i64::MAX),
    }
}

/// Is position `a` at or before `b`?
fn not_after(a: &str, b: &str) -> bool {
    position_key(a) <= position_key(b)
}

/// One follower: its own reads until it is level with its group, then
/// the group's batches (and its own reads again whenever it falls
/// behind or the group skips past it).
struct Follower<'a> {
    f: &'a Follow,
    tx: &'a mpsc::Sender<Bytes>,
    stall: Duration,
    /// Where it stands: the last position sent.
    position: String,
}

impl Follower<'_> {
    async fn send(&self, frame: Bytes) -> Result<(), Stop> {
        self.tx
            .send_timeout(frame, self.stall)
            .await
            .map_err(|_| Stop::Gone)
    }

    /// Sends what it read itself, and moves to its position.
    async fn sent(&mut self, batch: &Changes) -> Result<(), Stop> {
        for c in &batch.changes {
            self.send(event_frame(c.kind.name(), &c.position, &c.data))
                .await?;
        }
        self.moved(
            batch.changes.last().map(|c| c.position.as_str()),
            &batch.position,
        )
        .await
    }

    /// Moves to `to` (past changes it may not see: a frame with only an
    /// `id`, unless its last event was there).
    async fn moved(&mut self, last_event: Option<&str>, to: &str) -> Result<(), Stop> {
        if last_event != Some(to) && self.position != to {
            self.send(Bytes::from(format!("id: {to}\n\n"))).await?;
        }
        self.position = to.to_string();
        Ok(())
    }

    /// Reads for itself from its position until nothing more waits.
    async fn catch_up(&mut self, settings: &LiveSettings) -> Result<(), Stop> {
        loop {
            let read = self
                .f
                .controller
                .changes(
                    &self.f.cx,
                    self.f.id.as_deref(),
                    Some(&self.position),
                    BATCH,
                )
                .await;
            match read {
                Ok(b) => {
                    self.sent(&b).await?;
                    if !b.more {
                        return Ok(());
                    }
                }
                Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                    tracing::debug!(error = %e.detail, "live feed read failed; retrying");
                    tokio::time::sleep(settings.poll_interval).await;
                }
                Err(e) => return Err(Stop::Say("refused", e.detail.to_string())),
            }
        }
    }

    /// A batch of its group: the part after its position, or its own
    /// read when the batch starts past it.
    async fn take(&mut self, batch: &Batch, settings: &LiveSettings) -> Result<(), Stop> {
        if not_after(&batch.to, &self.position) {
            return Ok(());
        }
        if !not_after(&batch.from, &self.position) {
            return self.catch_up(settings).await;
        }
        let mut last = None;
        for (p, frame) in &batch.frames {
            if !not_after(p, &self.position) {
                self.send(frame.clone()).await?;
                last = Some(p.as_str());
            }
        }
        self.moved(last, &batch.to).await
    }
}

async fn run(
    f: Follow,
    first: Changes,
    behind: bool,
    tx: mpsc::Sender<Bytes>,
    mut group: Group,
    mut closing: watch::Receiver<bool>,
    settings: LiveSettings,
) {
    let mut me = Follower {
        f: &f,
        tx: &tx,
        stall: settings.stall_timeout,
        position: String::new(),
    };
    let stop = async {
        // EventSource reconnects after this many ms.
        me.send(Bytes::from_static(b"retry: 2000\n\n")).await?;
        me.sent(&first).await?;
        if first.more || behind {
            me.catch_up(&settings).await?;
        }
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
                batch = group.recv() => match batch {
                    Ok(batch) => me.take(&batch, &settings).await?,
                    Err(broadcast::error::RecvError::Lagged(_)) => me.catch_up(&settings).await?,
                    // The group's reader stopped (its reads are refused):
                    // read alone, and hear why.
                    Err(broadcast::error::RecvError::Closed) => {
                        me.catch_up(&settings).await?;
                        let (g, level) = me.f.slot.streams.join(me.f, &me.position);
                        group = g;
                        if !not_after(&level, &me.position) {
                            me.catch_up(&settings).await?;
                        }
                    }
                },
                _ = closing.changed() => {}
                _ = tx.closed() => return Err(Stop::Gone),
                _ = tokio::time::sleep(settings.heartbeat) => {
                    me.send(Bytes::from_static(b": heartbeat\n\n")).await?;
                }
            }
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
