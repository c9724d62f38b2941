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
//! Followers who see the same thing share one reader ([`GroupKey`]),
//! which reads after each change signal
//! ([`crate::store::Store::listen_changes`]: this instance's commits at
//! once, others' within the poll interval) and hands every follower the
//! same encoded frames. The response body is the follower itself: it is
//! asked for its next frame only when the connection can take one, so
//! nothing queues for a slow client — it falls behind its group's bounded
//! broadcast and reads for itself when it comes back, the database being
//! the only buffer; a client that takes nothing at all is cut off by the
//! server's write timeout, and resumes from the last id it got. Streams
//! are capped per caller (429) and per instance (503), and end on
//! shutdown and when the caller's credential no longer holds.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use crate::config::LiveSettings;
use crate::controller::{ChangeKind, Changes, Controller, Ctx};
use crate::error::ApiError;
use crate::query::position_order;

/// Changes read at once: one statement's worth, a bounded frame batch.
const BATCH: u64 = 100;

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
}

/// What a stream starts from.
pub struct Follow {
    pub controller: Arc<dyn Controller>,
    pub cx: Ctx,
    /// The record followed; `None`: the collection.
    pub id: Option<String>,
    pub slot: Slot,
    /// The credential that authenticated the caller, checked again as the
    /// stream goes on: when it expires or is revoked, the stream ends
    /// saying so.
    pub credential: Option<Credential>,
    pub tokens: Arc<crate::auth::tokens::Tokens>,
}

/// A credential a stream checks again while it is open.
#[derive(Clone)]
pub enum Credential {
    /// A bearer token (header, query or session): at every step — the
    /// check is a cached signature and the in-memory revocations.
    Bearer(String),
    /// An API key from an address: at every heartbeat, the check being a
    /// database read.
    ApiKey(String, Option<std::net::IpAddr>),
}

/// Where a stream starts: `Last-Event-ID`, else `timestamp=`, else now.
fn start_position(cx: &Ctx) -> Option<String> {
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
    let after = start_position(&f.cx);
    // Resuming, the record may have been deleted meanwhile: its deletion
    // is then the event owed (the read's scope still hides others').
    if let (Some(id), None) = (&f.id, &after) {
        f.controller.fetch(&f.cx, id).await?;
    }
    let first = match f
        .controller
        .changes(&f.cx, f.id.as_deref(), after.as_deref(), BATCH)
        .await
    {
        Ok(first) => first,
        // A position from before the deletions kept: the stream says so
        // (what `EventSource` shows its page), and ends.
        Err(e) if e.status == StatusCode::GONE => {
            let (reason, detail) = ending(&e);
            let mut frames = b"retry: 2000\n\n".to_vec();
            frames.extend_from_slice(&end_frame(reason, &detail));
            return Ok(event_stream(Body::from(frames)));
        }
        Err(e) => return Err(e),
    };
    let streams = f.slot.streams.clone();
    let key = GroupKey::of(&f);
    let mut me = Follower {
        controller: f.controller,
        cx: Arc::new(f.cx),
        id: f.id,
        credential: f.credential,
        tokens: f.tokens,
        closing: streams.closing.subscribe(),
        settings: streams.settings.clone(),
        group: None,
        key,
        _slot: f.slot,
        position: String::new(),
        // EventSource reconnects after this many ms.
        pending: VecDeque::from([Bytes::from_static(b"retry: 2000\n\n")]),
        catching_up: first.more,
        ended: false,
        heartbeat: Box::pin(tokio::time::sleep(streams.settings.heartbeat)),
    };
    me.sent(&first);
    if !first.more {
        me.join(&first.reached);
    }
    let body = Body::from_stream(futures_util::stream::unfold(me, |mut me| async move {
        me.next().await.map(|b| (Ok::<_, Infallible>(b), me))
    }));
    Ok(event_stream(body))
}

/// A `text/event-stream` answer with `body`.
fn event_stream(body: Body) -> axum::response::Response {
    let mut res = axum::response::Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx and friends: pass each event on at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
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
    frames: Vec<Frame>,
    /// Every frame's bytes in one: what a follower standing at `from`
    /// (nearly every one) sends, without copying frame by frame.
    whole: Bytes,
}

/// One change, encoded: its position and bytes, and for a `created`, the
/// position where the record was made and its bytes as an `updated`.
struct Frame {
    position: String,
    bytes: Bytes,
    made: Option<String>,
    as_update: Option<Bytes>,
}

/// A follower's end of its group's batches.
type Group = broadcast::Receiver<Arc<Batch>>;

/// A group as the hub keeps it: where its reader stands (moved before
/// each batch is sent, under the same lock, so a follower that joins
/// either gets the batch or sees the position past it), its batches, and
/// the request its followers read with (they all see the same things).
struct Shared {
    position: Arc<Mutex<String>>,
    tx: broadcast::Sender<Arc<Batch>>,
    cx: Arc<Ctx>,
}

/// Batches a slow follower may fall behind before it reads for itself.
const GROUP_QUEUE: usize = 64;

impl Streams {
    /// Joins the group of `key` — starting its reader at `position` if it
    /// has none, reading with `cx` — and says where the group stands.
    fn join(
        self: &Arc<Self>,
        key: &GroupKey,
        controller: &Arc<dyn Controller>,
        cx: &Arc<Ctx>,
        id: &Option<String>,
        position: &str,
    ) -> (Group, Arc<Ctx>, String) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = groups.get(key) {
            let rx = g.tx.subscribe();
            let at = g.position.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return (rx, g.cx.clone(), at);
        }
        let (tx, rx) = broadcast::channel(GROUP_QUEUE);
        let shared = Arc::new(Mutex::new(position.to_string()));
        groups.insert(
            key.clone(),
            Shared {
                position: shared.clone(),
                tx: tx.clone(),
                cx: cx.clone(),
            },
        );
        let reader = Reader {
            streams: self.clone(),
            key: key.clone(),
            controller: controller.clone(),
            cx: cx.clone(),
            id: id.clone(),
            position: shared,
            tx,
        };
        tokio::spawn(reader.run());
        (rx, cx.clone(), position.to_string())
    }
}

struct Reader {
    streams: Arc<Streams>,
    key: GroupKey,
    controller: Arc<dyn Controller>,
    cx: Arc<Ctx>,
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
        // When the last read that found changes began.
        let mut last_news = None;
        loop {
            let read_at = tokio::time::Instant::now();
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
                        last_news = Some(read_at);
                        let frames: Vec<Frame> = b
                            .changes
                            .iter()
                            .map(|c| Frame {
                                position: c.position.clone(),
                                bytes: event_frame(c.kind.name(), &c.position, &c.data),
                                made: c.made.clone(),
                                as_update: (c.kind == ChangeKind::Created)
                                    .then(|| event_frame("updated", &c.position, &c.data)),
                            })
                            .collect();
                        let whole = match frames.as_slice() {
                            [one] => one.bytes.clone(),
                            all => Bytes::from(
                                all.iter()
                                    .map(|f| &f.bytes[..])
                                    .collect::<Vec<_>>()
                                    .concat(),
                            ),
                        };
                        let mut at = self.position.lock().unwrap_or_else(|p| p.into_inner());
                        *at = b.position.clone();
                        let _ = self.tx.send(Arc::new(Batch {
                            from,
                            to: b.position,
                            frames,
                            whole,
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
                changed = wake.changed() => if changed.is_err() { self.leave(); return },
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
            // Changes committed closer together than the batch interval go
            // out together: one write per follower instead of one each (a
            // change after a quiet spell goes at once).
            let ready = last_news.map(|t| t + settings.batch_interval);
            if let Some(ready) = ready.filter(|r| *r > tokio::time::Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep_until(ready) => {}
                    _ = closing.changed() => {}
                }
                if *closing.borrow() {
                    self.leave();
                    return;
                }
            }
            // The read below sees every change signalled until now.
            wake.borrow_and_update();
        }
    }
}

/// One SSE frame for a change.
fn event_frame(kind: &str, id: &str, data: &serde_json::Value) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"))
}

/// The stream's last frame: why it ends — an `end` event, or for a
/// position from before the deletions kept, a `resync` event (the client
/// must read the collection again).
fn end_frame(reason: &str, detail: &str) -> Bytes {
    let event = if reason == RESYNC { RESYNC } else { "end" };
    let data = serde_json::json!({"reason": reason, "detail": detail});
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Why a refused read ends a stream.
const RESYNC: &str = "resync";

/// How a stream whose read was refused with `e` ends: (reason, detail).
fn ending(e: &ApiError) -> (&'static str, String) {
    let reason = if e.status == StatusCode::GONE {
        RESYNC
    } else {
        "refused"
    };
    (reason, e.detail.to_string())
}

/// Is position `a` at or before `b`?
fn not_after(a: &str, b: &str) -> bool {
    position_order(a) <= position_order(b)
}

/// One follower, and the body of its response: its own reads until it is
/// level with its group, then the group's batches (and its own reads
/// again whenever it falls behind or the group skips past it).
struct Follower {
    controller: Arc<dyn Controller>,
    /// Its group's request: what every follower of the group reads with.
    cx: Arc<Ctx>,
    id: Option<String>,
    credential: Option<Credential>,
    tokens: Arc<crate::auth::tokens::Tokens>,
    closing: watch::Receiver<bool>,
    settings: LiveSettings,
    /// Its group, once it is level with now (a follower resuming from
    /// long ago reads alone until then, so no group's reader starts in the
    /// past — nor, from a position in the future, past the present).
    group: Option<Group>,
    key: GroupKey,
    _slot: Slot,
    /// Where it stands: the last position sent.
    position: String,
    /// Frames ready for the connection.
    pending: VecDeque<Bytes>,
    /// It reads for itself until nothing more waits.
    catching_up: bool,
    /// Its last frame is pending.
    ended: bool,
    /// When the next heartbeat is due: one timer for the stream's life,
    /// not one per event.
    heartbeat: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Follower {
    /// The next bytes for the connection; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            // What is ready goes in one write.
            match self.pending.len() {
                0 => {}
                1 => return self.pending.pop_front(),
                _ => {
                    let mut all = Vec::new();
                    for frame in self.pending.drain(..) {
                        all.extend_from_slice(&frame);
                    }
                    return Some(Bytes::from(all));
                }
            }
            if self.ended {
                return None;
            }
            if let Err((reason, detail)) = self.step().await {
                self.pending.push_back(end_frame(reason, &detail));
                self.ended = true;
            }
        }
    }

    /// Joins its group at `reached`, where its own read got to (reading
    /// for itself again when the group already stands further).
    fn join(&mut self, reached: &str) {
        let streams = self._slot.streams.clone();
        let (group, cx, level) =
            streams.join(&self.key, &self.controller, &self.cx, &self.id, reached);
        self.cx = cx;
        self.group = Some(group);
        if !not_after(&level, &self.position) {
            self.catching_up = true;
        }
    }

    /// Queues what it read itself, and moves to its position.
    fn sent(&mut self, batch: &Changes) {
        for c in &batch.changes {
            self.pending
                .push_back(event_frame(c.kind.name(), &c.position, &c.data));
        }
        self.moved(
            batch.changes.last().map(|c| c.position.as_str()),
            &batch.position,
        );
    }

    /// Moves to `to` (past changes it may not see: a frame with only an
    /// `id`, unless its last event was there).
    fn moved(&mut self, last_event: Option<&str>, to: &str) {
        if last_event != Some(to) && self.position != to {
            self.pending.push_back(Bytes::from(format!("id: {to}\n\n")));
        }
        self.position = to.to_string();
    }

    /// A batch of its group: the part after its position, or its own
    /// read when the batch starts past it.
    fn take(&mut self, batch: &Batch) {
        if not_after(&batch.to, &self.position) {
            return;
        }
        // A batch from later skips what lies between: read for itself.
        if !not_after(&batch.from, &self.position) {
            self.catching_up = true;
            return;
        }
        // Standing where the batch starts, it takes it whole, as the group
        // told it.
        if batch.from == self.position {
            if !batch.whole.is_empty() {
                self.pending.push_back(batch.whole.clone());
            }
            let last = batch.frames.last().map(|f| f.position.clone());
            self.moved(last.as_deref(), &batch.to);
            return;
        }
        let mut last = None;
        for f in &batch.frames {
            if !not_after(&f.position, &self.position) {
                // The group told `created` from its own position; a record
                // made before this follower's stands is an update to it.
                let frame = match (&f.as_update, &f.made) {
                    (Some(update), Some(made)) if not_after(made, &self.position) => update,
                    _ => &f.bytes,
                };
                self.pending.push_back(frame.clone());
                last = Some(f.position.as_str());
            }
        }
        let last = last.map(str::to_string);
        self.moved(last.as_deref(), &batch.to);
    }

    /// One step: a read of its own while catching up, else waiting for
    /// its group's next batch with a heartbeat now and then. `Err`: why
    /// the stream ends.
    async fn step(&mut self) -> Result<(), (&'static str, String)> {
        if *self.closing.borrow() {
            return Err((
                "shutdown",
                "The server is shutting down; reconnect to resume.".into(),
            ));
        }
        if let Some(Credential::Bearer(_)) = &self.credential {
            // Boxed: inline, its state would sit in every stream's body
            // between steps.
            Box::pin(self.still_authorized()).await?;
        }
        if self.catching_up {
            // A long catch-up beats (and checks an API key) too.
            if self.heartbeat.is_elapsed() {
                self.beat().await?;
            }
            let read = self
                .controller
                .changes(&self.cx, self.id.as_deref(), Some(&self.position), BATCH)
                .await;
            match read {
                Ok(b) => {
                    self.sent(&b);
                    self.catching_up = b.more;
                    if !b.more && self.group.is_none() {
                        self.join(&b.reached);
                    }
                }
                // The database away: the position stays; try again.
                Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                    tracing::debug!(error = %e.detail, "live feed read failed; retrying");
                    tokio::time::sleep(self.settings.poll_interval).await;
                }
                Err(e) => return Err(ending(&e)),
            }
            return Ok(());
        }
        let Some(group) = self.group.as_mut() else {
            // Not caught up and not catching up cannot both hold.
            self.catching_up = true;
            return Ok(());
        };
        tokio::select! {
            batch = group.recv() => match batch {
                Ok(batch) => self.take(&batch),
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                // The group's reader stopped (its reads are refused): read
                // alone, and hear why.
                Err(broadcast::error::RecvError::Closed) => {
                    // Its reader stops at shutdown too: say so.
                    if *self.closing.borrow() {
                        return Ok(());
                    }
                    return Err(match self
                        .controller
                        .changes(&self.cx, self.id.as_deref(), Some(&self.position), 1)
                        .await
                    {
                        Err(e) => ending(&e),
                        Ok(_) => ("refused", "The feed stopped; reconnect to resume.".into()),
                    });
                }
            },
            _ = self.closing.changed() => {}
            _ = self.heartbeat.as_mut() => self.beat().await?,
        }
        Ok(())
    }

    /// A heartbeat: a comment for proxies, the next one due, and an API
    /// key checked again (a database read, so this often only).
    async fn beat(&mut self) -> Result<(), (&'static str, String)> {
        self.pending
            .push_back(Bytes::from_static(b": heartbeat\n\n"));
        let next = tokio::time::Instant::now() + self.settings.heartbeat;
        self.heartbeat.as_mut().reset(next);
        if let Some(Credential::ApiKey(..)) = &self.credential {
            Box::pin(self.still_authorized()).await?;
        }
        Ok(())
    }

    /// Does the credential the stream was opened with still hold? A 503
    /// (the database away: revocations or keys cannot be read now) says
    /// nothing against it.
    async fn still_authorized(&self) -> Result<(), (&'static str, String)> {
        let checked = match &self.credential {
            Some(Credential::Bearer(token)) => {
                self.tokens.verify(token, &self.cx.store).await.map(|_| ())
            }
            Some(Credential::ApiKey(key, ip)) => {
                crate::auth::api_keys::verify(&self.cx.store, key, *ip)
                    .await
                    .map(|_| ())
            }
            None => Ok(()),
        };
        match checked {
            Err(e) if e.status != StatusCode::SERVICE_UNAVAILABLE => {
                Err(("unauthorized", e.detail.to_string()))
            }
            _ => Ok(()),
        }
    }
}
