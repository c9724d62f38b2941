//! SQLite: connections, pragmas, group commit and row decoding (§13).
//!
//! restkit owns the storage path: statements run on the task that asks
//! for them, on connections it holds itself (rusqlite), with their
//! prepared statements cached per connection. There is no hop to another
//! thread and back per statement — what sqlx-sqlite's worker thread cost
//! (about a third of the CPU of a GET of one record, in futex wake-ups).
//!
//! - **Reads** take an idle read-only connection, run in place, and put
//!   it back. WAL lets them proceed during a write.
//! - **Writes** go through exactly one writer connection, so writes are
//!   serialized inside the process and clients never see "database is
//!   locked". Concurrent write requests are **committed in groups**: each
//!   request runs inside a savepoint of the writer's open transaction and
//!   releases it; the transaction commits when no other write request is
//!   waiting (or [`MAX_GROUP`] have joined), and every request of the
//!   group is answered only after that commit. A request that fails rolls
//!   back to its own savepoint: the others in its group are unaffected.
//!   An error that makes SQLite roll back the whole transaction (an
//!   interrupted write, I/O failure) fails every request of the group:
//!   none of them was acknowledged.
//! - `busy_timeout` covers other processes on the same file (the writer
//!   waits for their lock asynchronously, without holding a thread);
//!   `synchronous = NORMAL` is durable under WAL against a crash of the
//!   process, not against power loss for the last commits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use sea_query::{Expr, Query, QueryStatementWriter, SelectStatement, SqliteQueryBuilder, Values};
use serde_json::Value;
use tokio::sync::{oneshot, Notify, OwnedMutexGuard, Semaphore};

use super::sql::Write;
use super::{Dialect, ExistingForeignKey, Record, StoreError};
use crate::model::plan::ForeignKeySpec;
use crate::model::{FieldType, OnDelete, Resource};

/// At most this many requests share one commit: bounds how long the first
/// of a group waits for the last.
pub const MAX_GROUP: usize = 64;

/// How long a write waits for another process's lock on the file, and a
/// request for the writer or a read connection, before answering 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

mod watchdog {
    //! Cancels statements that run too long (§6.9), without a cost per
    //! query: each connection gets one SQLite progress handler when it is
    //! opened. SQLite calls it every [`OPS`] virtual-machine instructions
    //! of a running statement; it tells executions apart by (busy
    //! statement, its run count), restarts the clock on a new one, and
    //! asks SQLite to stop the statement (`SQLITE_INTERRUPT`) once one has
    //! run past the limit.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rusqlite::ffi;
    use rusqlite::Connection;

    /// VM instructions between checks: well under a millisecond of work.
    const OPS: i32 = 10_000;

    /// The statement `db` is executing and how many runs it had before.
    ///
    /// # Safety
    /// `db` must be a live connection, and this must run on the thread
    /// executing its statement (SQLite calls progress handlers there).
    /// Only read-only inspection functions are used, as the progress
    /// handler contract requires.
    unsafe fn running(db: *mut ffi::sqlite3) -> (usize, i32) {
        let mut stmt = unsafe { ffi::sqlite3_next_stmt(db, std::ptr::null_mut()) };
        while !stmt.is_null() {
            if unsafe { ffi::sqlite3_stmt_busy(stmt) } != 0 {
                let runs = unsafe { ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_RUN, 0) };
                return (stmt as usize, runs);
            }
            stmt = unsafe { ffi::sqlite3_next_stmt(db, stmt) };
        }
        (0, 0)
    }

    /// Installs the watchdog on `conn`. While `enforce` is false (the
    /// writer during migrations, whose index builds may rightly take
    /// long) statements run unbounded.
    pub fn install(
        conn: &Connection,
        limit: Duration,
        enforce: Arc<AtomicBool>,
    ) -> rusqlite::Result<()> {
        if limit.is_zero() {
            return Ok(());
        }
        // SAFETY: the handle is only read from inside the handler, which
        // the connection owns and drops with itself, so it outlives every
        // call.
        let db = unsafe { conn.handle() } as usize;
        let mut current = (0usize, -1i32, Instant::now());
        conn.progress_handler(
            OPS,
            Some(move || {
                // SAFETY: see `running`; SQLite invokes this on the
                // executing thread of connection `db`.
                let (stmt, runs) = unsafe { running(db as *mut ffi::sqlite3) };
                let now = Instant::now();
                if (stmt, runs) != (current.0, current.1) {
                    current = (stmt, runs, now);
                    return false;
                }
                now.duration_since(current.2) >= limit && enforce.load(Ordering::Relaxed)
            }),
        )
    }
}

/// SQLite primary result codes that mean the file cannot be used right
/// now: BUSY 5, LOCKED 6, READONLY 8, IOERR 10, CORRUPT 11, FULL 13,
/// CANTOPEN 14, PROTOCOL 15, NOTADB 26.
fn unavailable(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 8 | 10 | 11 | 13 | 14 | 15 | 26)
}

/// What a failed statement means; a unique violation names a field of `r`.
fn error(e: rusqlite::Error, r: Option<&Resource>) -> StoreError {
    use rusqlite::ffi;
    let rusqlite::Error::SqliteFailure(failure, message) = &e else {
        return StoreError::Other(e.to_string());
    };
    match failure.extended_code {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => StoreError::Unique {
            field: r.and_then(|r| {
                Dialect::Sqlite.unique_field(r, message.as_deref().unwrap_or(""), None)
            }),
        },
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::ForeignKey,
        // "NOT NULL constraint failed: books.subtitle"
        ffi::SQLITE_CONSTRAINT_NOTNULL => StoreError::Missing {
            field: r.and_then(|r| {
                let column = message.as_deref()?.rsplit_once('.')?.1;
                r.fields
                    .iter()
                    .find(|f| f.column == column)
                    .map(|f| f.name.clone())
            }),
        },
        // The statement watchdog stopped it.
        code if code & 0xff == ffi::SQLITE_INTERRUPT => StoreError::Timeout,
        // The file is locked by another process past busy_timeout (BUSY,
        // LOCKED), cannot be opened, read or written (CANTOPEN, IOERR,
        // READONLY, FULL), or what is read is not a database (NOTADB,
        // CORRUPT: the file was overwritten or damaged): the database is
        // unavailable for now, 503, and the next request tries again, so a
        // restored file serves without a restart.
        code if unavailable(code) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked)
}

/// Runs `f`, retrying while another process's lock keeps the file busy
/// (up to [`BUSY_TIMEOUT`]), with async sleeps between tries: no runtime
/// thread ever waits inside SQLite.
/// (The connection is passed as `&mut`: a shared borrow held across the
/// sleep would make the future not `Send`.)
async fn retry<T>(
    conn: &mut Connection,
    f: impl Fn(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match f(conn) {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

/// A sea-query value bound as the SQLite value it is.
struct Bind<'a>(&'a sea_query::Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as S;
        use sea_query::Value as V;
        let int = |i: Option<i64>| i.map(S::Integer);
        let value = match self.0 {
            V::Bool(b) => int(b.map(i64::from)),
            V::TinyInt(i) => int(i.map(i64::from)),
            V::SmallInt(i) => int(i.map(i64::from)),
            V::Int(i) => int(i.map(i64::from)),
            V::BigInt(i) => int(*i),
            V::TinyUnsigned(i) => int(i.map(i64::from)),
            V::SmallUnsigned(i) => int(i.map(i64::from)),
            V::Unsigned(i) => int(i.map(i64::from)),
            V::BigUnsigned(Some(u)) => {
                Some(S::Integer(i64::try_from(*u).map_err(|e| {
                    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
                })?))
            }
            V::BigUnsigned(None) => None,
            V::Float(f) => f.map(|f| S::Real(f.into())),
            V::Double(f) => f.map(S::Real),
            V::String(Some(s)) => return Ok(ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))),
            V::String(None) => None,
            V::Char(c) => c.map(|c| S::Text(c.to_string())),
            V::Bytes(Some(b)) => return Ok(ToSqlOutput::Borrowed(ValueRef::Blob(b))),
            V::Bytes(None) => None,
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("no SQLite binding for {other:?}").into(),
                ))
            }
        };
        Ok(ToSqlOutput::Owned(value.unwrap_or(S::Null)))
    }
}

/// A built statement: SQL text and the values bound to it.
type Built = (String, Values);

fn prepare<'c>(
    conn: &'c Connection,
    (sql, values): &Built,
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    prepare_text(conn, sql, values)
}

/// `sql` from the connection's statement cache, `values` bound.
fn prepare_text<'c>(
    conn: &'c Connection,
    sql: &str,
    values: &Values,
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (i, v) in values.0.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, Bind(v))?;
    }
    Ok(stmt)
}

/// Every row of `built`, each mapped by `each`.
fn rows<T>(
    conn: &Connection,
    built: &Built,
    mut each: impl FnMut(&rusqlite::Row<'_>) -> T,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = prepare(conn, built)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(each(row));
    }
    Ok(out)
}

/// The first row of `built`, if any, mapped by `each`.
fn row<T>(
    conn: &Connection,
    built: &Built,
    each: impl FnOnce(&rusqlite::Row<'_>) -> T,
) -> rusqlite::Result<Option<T>> {
    let mut stmt = prepare(conn, built)?;
    let mut rows = stmt.raw_query();
    Ok(rows.next()?.map(each))
}

/// Column `i` as an integer; `None` for NULL or a missing column.
fn int_at(row: &rusqlite::Row<'_>, i: usize) -> Option<i64> {
    match row.get_ref(i).ok()? {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(f) => Some(f as i64),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// Column `i` as text; `None` for NULL or a missing column.
fn text_at(row: &rusqlite::Row<'_>, i: usize) -> Option<String> {
    match row.get_ref(i).ok()? {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Advances the clock row inside the write transaction and returns the new
/// change time: `max(last + 1 µs, wall clock)`, so times strictly increase
/// even within one microsecond, across processes sharing the file, and if
/// the wall clock steps back. Being the transaction's first write, it also
/// takes SQLite's write lock, so the order of change times is the order of
/// commits. `stamp` is the fixed-width text form every change time is
/// stored in, read by the tombstone triggers.
fn advance_clock() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "UPDATE restkit_clock SET micros = max(micros + 1, ?1), stamp = {} \
             WHERE id = 1 RETURNING stamp",
            Dialect::Sqlite.stamp_sql("max(micros + 1, ?1)")
        )
    })
}

/// Creates a missing database file readable and writable by its owner
/// only: it holds password and token hashes. SQLite gives the `-wal` and
/// `-shm` files the main file's mode, and opens an empty file as an empty
/// database. An existing file keeps its mode (the operator's choice); a
/// file that cannot be created here is left to SQLite to report.
fn create_private(path: &std::path::Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    if options.open(path).is_err() {
        warn_if_shared(path);
    }
}

/// An existing database file others may read (made before restkit
/// created it private, or by hand): said once at start-up, never changed
/// behind the operator's back.
fn warn_if_shared(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{mode:o}"),
                    "the database holds password and token hashes but others may read it: chmod 600 it (and its -wal and -shm files)"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Where the database lives, from a `sqlite:` URL: `sqlite://file.db`,
/// `sqlite:///abs/file.db`, `sqlite:file.db`, `sqlite::memory:`; the
/// options `mode=rwc|rw` (the default: created if missing) and
/// `mode=memory` are understood, and any other option is refused rather
/// than ignored.
fn location(url: &str) -> Result<Option<PathBuf>, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Other(format!("not an SQLite URL: {url}")))?;
    let (path, options) = rest.split_once('?').unwrap_or((rest, ""));
    let mut memory = path == ":memory:";
    for (key, value) in form_urlencoded::parse(options.as_bytes()) {
        match (&*key, &*value) {
            ("mode", "memory") => memory = true,
            ("mode", "rwc" | "rw") => {}
            _ => {
                return Err(StoreError::Other(format!(
                    "bad SQLite URL: the option {key}={value} is not supported (mode=rwc and mode=memory are)"
                )))
            }
        }
    }
    if memory {
        return Ok(None);
    }
    if path.is_empty() {
        return Err(StoreError::Other(
            "bad SQLite URL: no file name (sqlite://file.db or sqlite::memory:)".into(),
        ));
    }
    let decoded: Vec<u8> = percent_decode(path.as_bytes());
    Ok(Some(PathBuf::from(
        String::from_utf8_lossy(&decoded).into_owned(),
    )))
}

/// `%XX` escapes of a URL path, decoded (as in `sqlite://my%20file.db`).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// How connections to one database are opened.
struct Opener {
    /// `None`: an in-memory database, which lives in its one connection.
    path: Option<PathBuf>,
    statement_timeout: Duration,
}

impl Opener {
    /// A connection with restkit's pragmas and the statement watchdog.
    /// The writer's watchdog obeys `enforce`; readers' always bound.
    fn open(&self, writer: bool, enforce: Arc<AtomicBool>) -> Result<Connection, StoreError> {
        let flags = if writer {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match &self.path {
            Some(path) => Connection::open_with_flags(path, flags),
            None => Connection::open_in_memory(),
        }
        .map_err(|e| error(e, None))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            if writer {
                let mode: String =
                    conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
                if self.path.is_some() && !mode.eq_ignore_ascii_case("wal") {
                    return Err(rusqlite::Error::ToSqlConversionFailure(
                        format!(
                            "the database cannot use WAL mode (journal mode is {mode}): \
                             readers would block the writer; use a local file system"
                        )
                        .into(),
                    ));
                }
                conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
            }
            // Nothing waits for a lock inside SQLite, on a runtime
            // thread: a busy statement is retried after async sleeps
            // (`retry`, `begin_immediate`).
            conn.busy_timeout(Duration::ZERO)?;
            // The query planner stability guarantee: a plan never depends
            // on bound values. Without it, SQLite marks a statement whose
            // plan read a bound value (`LIMIT ?`, a `LIKE ?` pattern) and
            // prepares it again whenever that value changes — a third of
            // the CPU of a page of 20 went to parsing its SQL again.
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
            conn.set_prepared_statement_cache_capacity(256);
            watchdog::install(&conn, self.statement_timeout, enforce)
        };
        setup().map_err(|e| error(e, None))?;
        Ok(conn)
    }
}

/// Read-only connections, taken by a read while it runs and put back.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection that may exist.
    slots: Semaphore,
    /// Connections running a statement now.
    busy: AtomicUsize,
    always: Arc<AtomicBool>,
}

/// The single writer and the group of requests waiting for its commit.
struct Writer {
    conn: Connection,
    /// A group transaction is open (`BEGIN IMMEDIATE` ran, not yet ended).
    open: bool,
    /// Requests whose writes are in the open transaction, each waiting
    /// for its commit.
    group: Vec<oneshot::Sender<Result<(), StoreError>>>,
}

struct WriteSide {
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// Write requests waiting for the writer: while there are some, a
    /// finished request leaves the transaction open for them to join.
    queued: AtomicUsize,
    /// Wakes the flusher, which commits a group left open for others once
    /// their turn has passed (so an abandoned waiter never strands one).
    flush: Arc<Notify>,
    /// Whether the writer's statement watchdog is on (off while migrating).
    enforce: Arc<AtomicBool>,
    in_memory: bool,
    /// Told of every commit (live feeds, §16).
    changes: Arc<super::changes::Changes>,
    /// Commits of write groups, and the requests they carried.
    commits: AtomicU64,
    committed: AtomicU64,
}

impl Writer {
    /// Answers every request of the group with `done`, and empties it.
    fn answer(&mut self, done: Result<(), StoreError>) {
        for waiter in self.group.drain(..) {
            let _ = waiter.send(done.clone());
        }
    }
}

/// One more in `count` while this lives: however its holder ends
/// (returned, cancelled at an await, panicked), the count comes back down.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(count: &'a AtomicUsize) -> Counted<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Counted(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WriteSide {
    /// The writer, after the requests queued before this one.
    async fn lock(self: &Arc<Self>) -> Result<OwnedMutexGuard<Writer>, StoreError> {
        let _queued = Counted::new(&self.queued);
        tokio::time::timeout(ACQUIRE_TIMEOUT, self.writer.clone().lock_owned())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "the database writer stayed busy for {} s",
                    ACQUIRE_TIMEOUT.as_secs()
                ))
            })
    }

    /// A request of the open group is done (committed to its savepoint or
    /// rolled back): commit the group now, unless others are waiting to
    /// join it — then the last of them, or the flusher, will.
    fn finish(&self, w: &mut Writer) {
        if !w.open {
            return;
        }
        if self.in_memory || w.group.len() >= MAX_GROUP || self.queued.load(Ordering::SeqCst) == 0 {
            self.commit_group(w);
        } else {
            self.flush.notify_one();
        }
    }

    /// Commits the open transaction and answers every request in it.
    fn commit_group(&self, w: &mut Writer) {
        if !w.open {
            return;
        }
        w.open = false;
        let done = w.conn.execute_batch("COMMIT").map_err(|e| error(e, None));
        if done.is_err() && !w.conn.is_autocommit() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        // A group whose only requests failed commits nothing: not counted,
        // so commits never outnumber the writes they carried.
        if done.is_ok() && !w.group.is_empty() {
            self.commits.fetch_add(1, Ordering::Relaxed);
            self.committed
                .fetch_add(w.group.len() as u64, Ordering::Relaxed);
        }
        let changed = done.is_ok();
        w.answer(done);
        if changed {
            self.changes.committed();
        }
    }
}

/// When SQLite has rolled the whole transaction back by itself (an
/// interrupted write, an I/O error), the requests already in the group
/// lost their writes: they are answered with `why`, never acknowledged.
fn check_lost(w: &mut Writer, why: &StoreError) {
    if w.open && w.conn.is_autocommit() {
        w.open = false;
        w.answer(Err(why.clone()));
    }
}

/// Takes SQLite's write lock, waiting for another process's lock (up to
/// [`BUSY_TIMEOUT`]) asynchronously, so no runtime thread blocks on it.
async fn begin_immediate(w: &mut Writer) -> Result<(), StoreError> {
    // Left inside a transaction (cannot happen while `open` is kept
    // right; roll back rather than trust it).
    if !w.conn.is_autocommit() {
        w.conn
            .execute_batch("ROLLBACK")
            .map_err(|e| error(e, None))?;
    }
    retry(&mut w.conn, |c| c.execute_batch("BEGIN IMMEDIATE"))
        .await
        .map_err(|e| error(e, None))
}

/// Undoes the current request's writes. When that fails and SQLite did
/// not roll back by itself, the transaction still holds them: it is
/// rolled back whole, and the group's earlier requests fail with it —
/// never committed with a failed request's writes inside.
fn undo_request(w: &mut Writer) {
    if !w.open {
        return;
    }
    if let Err(e) = w.conn.execute_batch("ROLLBACK TO request; RELEASE request") {
        let e = error(e, None);
        if !w.conn.is_autocommit() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        w.open = false;
        w.answer(Err(e));
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    opener: Opener,
    /// `None` in memory, where the writer's connection is the database.
    readers: Option<Readers>,
    /// `/health`'s own connection: a probe must not queue behind the
    /// requests holding every read connection (50 expensive reads held
    /// `/health` for 5 s), or a load balancer takes a busy instance for a
    /// dead one.
    health: Option<tokio::sync::Mutex<Option<Connection>>>,
    write: Arc<WriteSide>,
    /// The text of each shape of single-record read asked for.
    ones: super::sql::OneTexts,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The flusher sees the store gone and ends.
        self.write.flush.notify_one();
    }
}

/// Commits groups left open for requests that were waiting (see
/// [`WriteSide::finish`]): it queues for the writer behind them, so it
/// commits once their turn has passed, whether they joined or gave up.
async fn flusher(side: Weak<WriteSide>, flush: Arc<Notify>) {
    loop {
        flush.notified().await;
        let Some(side) = side.upgrade() else {
            return;
        };
        // The store is alive while a strong reference besides this one
        // exists; alone, it is being dropped.
        if Arc::strong_count(&side) == 1 {
            return;
        }
        let mut w = side.writer.clone().lock_owned().await;
        side.commit_group(&mut w);
    }
}

impl SqliteStore {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        statement_timeout: Duration,
    ) -> Result<SqliteStore, StoreError> {
        let path = location(url)?;
        if let Some(path) = &path {
            create_private(path);
        }
        let opener = Opener {
            path,
            statement_timeout,
        };
        let in_memory = opener.path.is_none();
        // The single writer is bounded too: a long filtered DELETE must not
        // hold the only writer (it is interrupted, rolled back, and 503).
        let enforce = Arc::new(AtomicBool::new(true));
        let conn = opener.open(true, enforce.clone())?;
        let flush = Arc::new(Notify::new());
        let write = Arc::new(WriteSide {
            writer: Arc::new(tokio::sync::Mutex::new(Writer {
                conn,
                open: false,
                group: Vec::new(),
            })),
            queued: AtomicUsize::new(0),
            flush: flush.clone(),
            enforce,
            in_memory,
            changes: Arc::default(),
            commits: AtomicU64::new(0),
            committed: AtomicU64::new(0),
        });
        tokio::spawn(flusher(Arc::downgrade(&write), flush));
        let always = Arc::new(AtomicBool::new(true));
        let (readers, health) = if in_memory {
            (None, None)
        } else {
            // Opened now, so a file that cannot be read fails start-up.
            let health = opener.open(false, always.clone())?;
            (
                Some(Readers {
                    idle: Mutex::new(Vec::new()),
                    slots: Semaphore::new(max_connections.max(1) as usize),
                    busy: AtomicUsize::new(0),
                    always,
                }),
                Some(tokio::sync::Mutex::new(Some(health))),
            )
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                opener,
                readers,
                health,
                write,
                ones: Default::default(),
            }),
        })
    }

    /// Connections (in use, idle) of the readers and the writer.
    pub fn pool_state(&self) -> [(&'static str, u32, u32); 2] {
        let (r_use, r_idle) = match &self.inner.readers {
            Some(r) => (
                r.busy.load(Ordering::Relaxed) as u32,
                lock(&r.idle).len() as u32,
            ),
            None => (0, 0),
        };
        let w_use = u32::from(self.inner.write.writer.try_lock().is_err());
        [("read", r_use, r_idle), ("write", w_use, 1 - w_use)]
    }

    /// Told of every commit.
    pub fn changes(&self) -> &Arc<super::changes::Changes> {
        &self.inner.write.changes
    }

    /// Write groups committed, and the write requests they carried.
    pub fn commit_groups(&self) -> (u64, u64) {
        let w = &self.inner.write;
        (
            w.commits.load(Ordering::Relaxed),
            w.committed.load(Ordering::Relaxed),
        )
    }

    /// Runs `f` on a read connection, in place. A failure that leaves the
    /// schema unreadable too (a file overwritten under its connections)
    /// means the database is unavailable (503, served again once the file
    /// is back), not a bug (500).
    async fn read<T>(
        &self,
        f: impl Fn(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A read runs in place and may not wait for anything: it still
        // spends the task's scheduling budget, so a task that reads in a
        // loop lets the others (writers waiting for their commit) run.
        tokio::task::consume_budget().await;
        let done = match &self.inner.readers {
            Some(readers) => readers.run(&self.inner.opener, f).await,
            None => {
                let w = self.inner.write.lock().await?;
                f(&w.conn).map_err(|e| error(e, None))
            }
        };
        match done {
            Err(StoreError::Other(cause)) if self.ping().await.is_err() => {
                Err(StoreError::Unavailable(cause))
            }
            other => other,
        }
    }

    /// Reads the schema, not just `SELECT 1` (which never touches the
    /// file): a database that cannot be read fails here. On `/health`'s
    /// own connection, so busy read connections do not make it wait.
    pub async fn ping(&self) -> Result<(), StoreError> {
        const PROBE: &str = "SELECT count(*) FROM sqlite_schema";
        let probe = |c: &Connection| c.query_row(PROBE, [], |_| Ok(()));
        match &self.inner.health {
            Some(health) => {
                let mut slot = health.lock().await;
                if slot.is_none() {
                    *slot = Some(
                        self.inner
                            .opener
                            .open(false, Arc::new(AtomicBool::new(true)))?,
                    );
                }
                let conn = slot.as_mut().expect("opened above");
                retry(conn, probe).await.map_err(|e| error(e, None))
            }
            None => {
                let w = self.inner.write.lock().await?;
                probe(&w.conn).map_err(|e| error(e, None))
            }
        }
    }

    pub async fn fetch_all(
        &self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Vec<Record>, StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        self.read(|c| rows(c, &built, |row| decode(r, fields, row)))
            .await
    }

    /// Rows of [`super::sql::select_list_with_mark`]: the stamp, the page's
    /// primary key, then `fields`. A row whose key is NULL is the empty
    /// page's placeholder; no row at all means the clock row is missing.
    pub async fn fetch_all_with_mark(
        &self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<(String, Vec<Record>), StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        let rows = self
            .read(|c| {
                rows(c, &built, |row| {
                    let mark = text_at(row, 0);
                    let record = int_at(row, 1).map(|_| decode_from(r, fields, row, 2));
                    (mark, record)
                })
            })
            .await?;
        let mark = rows
            .first()
            .and_then(|(mark, _)| mark.clone())
            .ok_or_else(|| StoreError::Other("the clock row is missing: run migrations".into()))?;
        Ok((mark, rows.into_iter().filter_map(|(_, rec)| rec).collect()))
    }

    pub async fn fetch_optional(
        &self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Option<Record>, StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        self.read(|c| row(c, &built, |row| decode(r, fields, row)))
            .await
    }

    /// One record by key within `scope` ([`super::sql::select_one`]), its
    /// SQL text built once per shape.
    pub async fn fetch_one(
        &self,
        r: &Resource,
        fields: &[usize],
        id: i64,
        scope: &super::Scope,
    ) -> Result<Option<Record>, StoreError> {
        let (sql, values) = self
            .inner
            .ones
            .get(r, fields, id, scope, |s| s.build(SqliteQueryBuilder));
        self.read(|c| {
            let mut stmt = prepare_text(c, &sql, &values)?;
            let mut rows = stmt.raw_query();
            Ok(rows.next()?.map(|row| decode(r, fields, row)))
        })
        .await
    }

    /// The first column of the first row; `None` for no row or NULL.
    pub async fn fetch_scalar(&self, stmt: SelectStatement) -> Result<Option<i64>, StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        let got = self.read(|c| row(c, &built, |row| int_at(row, 0))).await?;
        Ok(got.flatten())
    }

    pub async fn fetch_id_times(
        &self,
        stmt: SelectStatement,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        let pairs = self
            .read(|c| rows(c, &built, |row| (int_at(row, 0), text_at(row, 1))))
            .await?;
        pairs
            .into_iter()
            .map(|pair| match pair {
                (Some(id), Some(time)) => Ok((id, time)),
                _ => Err(StoreError::Other("a tombstone without id or time".into())),
            })
            .collect()
    }

    /// The latest committed change time: the one writer holds the clock
    /// row from its first statement, so nothing can still commit at or
    /// before it.
    pub async fn horizon(&self) -> Result<String, StoreError> {
        let built: Built = (
            "SELECT stamp FROM restkit_clock WHERE id = 1".into(),
            Values(Vec::new()),
        );
        self.read(|c| row(c, &built, |row| text_at(row, 0)))
            .await?
            .flatten()
            .ok_or_else(|| StoreError::Other("the clock row is missing: run migrations".into()))
    }

    /// Begins a request's write on the single writer and takes its change
    /// time from the clock row ([`advance_clock`]). The request runs in a
    /// savepoint of the group transaction, which `BEGIN IMMEDIATE` opened
    /// with SQLite's write lock before the clock was read.
    pub async fn begin_write(&self) -> Result<SqliteWrite, StoreError> {
        let side = &self.inner.write;
        tokio::task::consume_budget().await;
        let mut w = side.lock().await?;
        if !w.open {
            begin_immediate(&mut w).await?;
            w.open = true;
        }
        if let Err(e) = w.conn.execute_batch("SAVEPOINT request") {
            let e = error(e, None);
            check_lost(&mut w, &e);
            side.finish(&mut w);
            return Err(e);
        }
        let mut tx = SqliteWrite {
            w: Some(w),
            side: side.clone(),
            grouped: true,
            now: String::new(),
        };
        tx.take_change_time().await?;
        Ok(tx)
    }

    /// A transaction on the single writer, alone (no group), that does not
    /// touch the clock (which a migration may still have to create): every
    /// statement of a migration runs in one of these, so a migration is
    /// applied whole or not at all, and no other writer — another process
    /// sharing the file included — runs between its statements (a delete
    /// while the tombstone trigger is being re-created would leave no
    /// tombstone).
    ///
    /// Foreign keys are not enforced while it is open (SQLite ignores the
    /// setting inside a transaction, so it is switched before): a table
    /// rebuilt to gain a foreign key is dropped and replaced, and the drop
    /// of an enforced parent would run its children's `ON DELETE`. The
    /// migration checks every key before it commits
    /// ([`SqliteWrite::foreign_key_violations`]); commit and rollback turn
    /// enforcement back on.
    pub async fn begin_ddl(&self) -> Result<SqliteWrite, StoreError> {
        let side = &self.inner.write;
        let mut w = side.lock().await?;
        side.commit_group(&mut w);
        if !w.conn.is_autocommit() {
            let _ = w.conn.execute_batch("ROLLBACK");
        }
        w.conn
            .execute_batch("PRAGMA foreign_keys = OFF")
            .map_err(|e| error(e, None))?;
        if let Err(e) = begin_immediate(&mut w).await {
            enforce_keys(&w.conn)?;
            return Err(e);
        }
        Ok(SqliteWrite {
            w: Some(w),
            side: side.clone(),
            grouped: false,
            now: String::new(),
        })
    }

    /// Lifts the writer's statement time limit until the returned guard
    /// is dropped (however the migration ends): index builds may rightly
    /// run long.
    pub fn unbounded_writes(&self) -> impl Drop + use<> {
        struct Restore(Arc<AtomicBool>);
        impl Drop for Restore {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let enforce = self.inner.write.enforce.clone();
        enforce.store(false, Ordering::Relaxed);
        Restore(enforce)
    }

    pub async fn table_is_empty(&self, table: &str) -> Result<bool, StoreError> {
        let probe = Query::select()
            .expr(Expr::val(1))
            .from(sea_query::Alias::new(table))
            .limit(1)
            .to_owned()
            .build(SqliteQueryBuilder);
        let table = table.to_string();
        self.read(move |c| {
            if columns(c, &table)?.is_empty() {
                return Ok(true);
            }
            Ok(row(c, &probe, |_| ())?.is_none())
        })
        .await
    }
}

impl Readers {
    async fn run<T>(
        &self,
        opener: &Opener,
        f: impl Fn(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let _permit = match self.slots.try_acquire() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(ACQUIRE_TIMEOUT, self.slots.acquire())
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "no read connection came free for {} s",
                        ACQUIRE_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(|_| StoreError::Unavailable("the store is closed".into()))?,
        };
        let idle = lock(&self.idle).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => opener.open(false, self.always.clone())?,
        };
        // Counted busy until dropped (a panic in `f` too).
        let busy = Counted::new(&self.busy);
        let done = retry(&mut conn, f).await.map_err(|e| error(e, None));
        drop(busy);
        lock(&self.idle).push(conn);
        done
    }
}

/// A std mutex's data, also after a panic elsewhere (the data — idle
/// connections — stays valid).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A table's columns: (name, declared type); empty when it does not exist.
fn columns(c: &Connection, table: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let built: Built = (
        "SELECT name, type FROM pragma_table_info(?)".into(),
        Values(vec![table.into()]),
    );
    rows(c, &built, |row| {
        (
            text_at(row, 0).unwrap_or_default(),
            text_at(row, 1).unwrap_or_default(),
        )
    })
}

/// One foreign key as SQLite lists it (`pragma_foreign_key_list`): its
/// columns in order.
struct ListedKey {
    table: String,
    from: Vec<String>,
    to: Vec<String>,
    on_update: String,
    on_delete: String,
}

fn foreign_key_list(c: &Connection, table: &str) -> rusqlite::Result<Vec<ListedKey>> {
    let built: Built = (
        "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete \
         FROM pragma_foreign_key_list(?) ORDER BY id, seq"
            .into(),
        Values(vec![table.into()]),
    );
    let listed = rows(c, &built, |row| {
        (
            int_at(row, 0).unwrap_or(0),
            text_at(row, 1).unwrap_or_default(),
            text_at(row, 2).unwrap_or_default(),
            // No column named: the target's primary key.
            text_at(row, 3),
            text_at(row, 4).unwrap_or_default(),
            text_at(row, 5).unwrap_or_default(),
        )
    })?;
    let mut keys: Vec<(i64, ListedKey)> = Vec::new();
    for (id, target, from, to, on_update, on_delete) in listed {
        if keys.last().is_none_or(|(last, _)| *last != id) {
            keys.push((
                id,
                ListedKey {
                    table: target,
                    from: Vec::new(),
                    to: Vec::new(),
                    on_update,
                    on_delete,
                },
            ));
        }
        let key = &mut keys.last_mut().expect("pushed above").1;
        key.from.push(from);
        key.to.push(to.unwrap_or_default());
    }
    Ok(keys.into_iter().map(|(_, k)| k).collect())
}

/// `name` as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Turns foreign keys back on for the writer after a DDL transaction
/// (outside any transaction, where the setting takes effect) and checks
/// that they are.
fn enforce_keys(conn: &Connection) -> Result<(), StoreError> {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    conn.execute_batch("PRAGMA foreign_keys = ON")
        .map_err(|e| error(e, None))?;
    let on: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
        .map_err(|e| error(e, None))?;
    if on == 1 {
        Ok(())
    } else {
        Err(StoreError::Other(
            "foreign keys are not enforced on the writer".into(),
        ))
    }
}

/// The first thing in a table's `CREATE TABLE` text that [`rebuild`]
/// would not carry over, judged on its words outside quoted names and
/// literals (a column named `checked_at` is no `CHECK`): constraints and
/// collations written into it, generated columns, deferred keys, and
/// the `WITHOUT ROWID` and `STRICT` table options. restkit's own tables
/// have none.
fn not_carried(create: &str) -> Option<&'static str> {
    let mut words = String::with_capacity(create.len());
    let mut chars = create.chars();
    while let Some(c) = chars.next() {
        let close = match c {
            '"' => '"',
            '\'' => '\'',
            '`' => '`',
            '[' => ']',
            _ => {
                words.push(c.to_ascii_uppercase());
                continue;
            }
        };
        // A doubled quote inside stays inside.
        for d in chars.by_ref() {
            if d == close {
                break;
            }
        }
        words.push(' ');
    }
    let tokens: Vec<&str> = words
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .collect();
    [
        "CHECK",
        "UNIQUE",
        "COLLATE",
        "GENERATED",
        "DEFERRABLE",
        "STRICT",
        "ROWID",
    ]
    .into_iter()
    .find(|w| tokens.contains(w))
}

/// See [`SqliteWrite::rebuild`].
fn rebuild(
    c: &Connection,
    table: &str,
    keys: &[ForeignKeySpec],
    not_null: &[(String, bool)],
) -> rusqlite::Result<()> {
    let one = |sql: &str| -> Built { (sql.into(), Values(vec![table.into()])) };
    let columns = rows(
        c,
        &one(
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid",
        ),
        |row| {
            (
                text_at(row, 0).unwrap_or_default(),
                text_at(row, 1).unwrap_or_default(),
                int_at(row, 2) == Some(1),
                text_at(row, 3),
                int_at(row, 4).unwrap_or(0),
            )
        },
    )?;
    let create = row(
        c,
        &one("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?"),
        |row| text_at(row, 0).unwrap_or_default(),
    )?
    .unwrap_or_default();
    let autoincrement = create.to_ascii_uppercase().contains("AUTOINCREMENT");
    // Indexes and triggers go with the table; made again after.
    let attached = rows(
        c,
        &one("SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL"),
        |row| text_at(row, 0).unwrap_or_default(),
    )?;
    let high_mark = if autoincrement {
        row(
            c,
            &one("SELECT seq FROM sqlite_sequence WHERE name = ?"),
            |row| int_at(row, 0),
        )?
        .flatten()
    } else {
        None
    };
    let pk: Vec<&str> = {
        let mut pk: Vec<(i64, &str)> = columns
            .iter()
            .filter(|col| col.4 > 0)
            .map(|col| (col.4, col.0.as_str()))
            .collect();
        pk.sort();
        pk.into_iter().map(|(_, name)| name).collect()
    };
    let mut defs = Vec::new();
    for (name, ty, refuses_null, default, in_pk) in &columns {
        let mut def = format!("{} {ty}", quoted(name));
        if *in_pk > 0 && pk.len() == 1 {
            def.push_str(" PRIMARY KEY");
            if autoincrement {
                def.push_str(" AUTOINCREMENT");
            }
        }
        let refuses_null = not_null
            .iter()
            .find(|(column, _)| column.eq_ignore_ascii_case(name))
            .map_or(*refuses_null, |(_, wanted)| *wanted);
        if refuses_null && *in_pk == 0 {
            def.push_str(" NOT NULL");
        }
        if let Some(default) = default {
            // SQLite's own text of the default expression, parenthesized
            // as any expression may be (`datetime('now')` needs it).
            def.push_str(&format!(" DEFAULT ({default})"));
        }
        defs.push(def);
    }
    if pk.len() > 1 {
        let names: Vec<String> = pk.iter().map(|n| quoted(n)).collect();
        defs.push(format!("PRIMARY KEY ({})", names.join(", ")));
    }
    let list = |names: &[String]| {
        names
            .iter()
            .map(|n| quoted(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for kept in foreign_key_list(c, table)? {
        let replaced = kept.from.len() == 1
            && keys
                .iter()
                .any(|k| k.column.eq_ignore_ascii_case(&kept.from[0]));
        if replaced {
            continue;
        }
        let to = if kept.to.iter().all(String::is_empty) {
            String::new()
        } else {
            format!(" ({})", list(&kept.to))
        };
        defs.push(format!(
            "FOREIGN KEY ({}) REFERENCES {}{to} ON UPDATE {} ON DELETE {}",
            list(&kept.from),
            quoted(&kept.table),
            kept.on_update,
            kept.on_delete
        ));
    }
    for k in keys {
        defs.push(format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {}",
            quoted(&k.column),
            quoted(&k.target_table),
            quoted(&k.target_column),
            k.on_delete.sql()
        ));
    }
    let fresh = format!("restkit_rebuild_{table}");
    let names: Vec<String> = columns.iter().map(|col| col.0.clone()).collect();
    c.execute_batch(&format!(
        "DROP TABLE IF EXISTS {fresh_q}; CREATE TABLE {fresh_q} ({defs}); \
         INSERT INTO {fresh_q} ({cols}) SELECT {cols} FROM {table_q}; \
         DROP TABLE {table_q}; ALTER TABLE {fresh_q} RENAME TO {table_q};",
        fresh_q = quoted(&fresh),
        table_q = quoted(table),
        defs = defs.join(", "),
        cols = list(&names),
    ))?;
    for sql in attached {
        c.execute_batch(&sql)?;
    }
    if let Some(mark) = high_mark {
        let built: Built = (
            "INSERT INTO sqlite_sequence (name, seq) SELECT ?1, ?2 \
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)"
                .into(),
            Values(vec![table.into(), mark.into()]),
        );
        prepare(c, &built)?.raw_execute()?;
        let built: Built = (
            "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1".into(),
            Values(vec![table.into(), mark.into()]),
        );
        prepare(c, &built)?.raw_execute()?;
    }
    Ok(())
}

/// Names of a table's indexes.
fn indexes(c: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let built: Built = (
        "SELECT name FROM pragma_index_list(?)".into(),
        Values(vec![table.into()]),
    );
    rows(c, &built, |row| text_at(row, 0).unwrap_or_default())
}

/// Builds a record from a row whose columns are `fields`, in order.
fn decode(r: &Resource, fields: &[usize], row: &rusqlite::Row<'_>) -> Record {
    decode_from(r, fields, row, 0)
}

/// As [`decode`], the fields starting at column `first`. SQLite is
/// dynamically typed: a value is read by its declared type where it is
/// stored as one, and otherwise served as what it is (never dropped).
fn decode_from(r: &Resource, fields: &[usize], row: &rusqlite::Row<'_>, first: usize) -> Record {
    let mut rec = Record::with_capacity(fields.len());
    for (i, &f) in fields.iter().enumerate() {
        let field = &r.fields[f];
        let v = row
            .get_ref(i + first)
            .map(|v| value_of(field.ty, v))
            .unwrap_or(Value::Null);
        rec.insert(field.name.clone(), v);
    }
    rec
}

fn value_of(ty: FieldType, v: ValueRef<'_>) -> Value {
    // Valid UTF-8 (what restkit writes) is checked by the fast path and
    // copied once; anything else is kept, with U+FFFD for what is not
    // UTF-8.
    let text = |t: &[u8]| match std::str::from_utf8(t) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(t).into_owned(),
    };
    match (ty, v) {
        (_, ValueRef::Null) => Value::Null,
        (FieldType::Boolean, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (FieldType::Number, ValueRef::Integer(i)) => Value::from(i as f64),
        (FieldType::Decimal { scale, .. }, ValueRef::Integer(i)) => {
            Value::String(crate::model::value::format_decimal(i, scale))
        }
        (ty, ValueRef::Integer(i)) if ty == FieldType::String || ty.is_canonical_text() => {
            Value::String(i.to_string())
        }
        (ty, ValueRef::Real(f)) if ty == FieldType::String || ty.is_canonical_text() => {
            Value::String(f.to_string())
        }
        (_, ValueRef::Integer(i)) => Value::from(i),
        (_, ValueRef::Real(f)) => Value::from(f),
        (FieldType::Json, ValueRef::Text(t)) => {
            let s = text(t);
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        (_, ValueRef::Text(t) | ValueRef::Blob(t)) => Value::String(text(t)),
    }
}

/// The answer to a request whose group SQLite rolled back by itself.
fn rolled_back() -> StoreError {
    StoreError::Unavailable("the write's transaction was rolled back; nothing was written".into())
}

/// One request's write on the single writer: a savepoint of the open
/// group transaction (or, for a migration, a transaction of its own).
/// Dropped without [`SqliteWrite::commit`], its writes are rolled back at
/// once — before anyone else gets the writer — and the group goes on.
pub struct SqliteWrite {
    w: Option<OwnedMutexGuard<Writer>>,
    side: Arc<WriteSide>,
    /// In a group (a request) rather than alone (a migration).
    grouped: bool,
    pub now: String,
}

impl SqliteWrite {
    /// Runs `f` on the writer; a failure that rolled the whole transaction
    /// back fails the group's earlier requests too (see [`check_lost`]).
    fn run<T>(
        &mut self,
        r: Option<&Resource>,
        f: impl Fn(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let w = self
            .w
            .as_mut()
            .expect("a write transaction holds the writer until commit or drop");
        if self.grouped && !w.open {
            // SQLite rolled the group back: a statement now would run in
            // autocommit and commit at once, outside the request.
            return Err(rolled_back());
        }
        f(&w.conn).map_err(|e| {
            let e = error(e, r);
            if self.grouped {
                check_lost(w, &e);
            }
            e
        })
    }

    pub async fn returning(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: Write,
    ) -> Result<Option<Record>, StoreError> {
        let built = match stmt {
            Write::Insert(s) => s.build(SqliteQueryBuilder),
            Write::Update(s) => s.build(SqliteQueryBuilder),
        };
        self.run(Some(r), |c| row(c, &built, |row| decode(r, fields, row)))
    }

    pub async fn fetch_optional(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Option<Record>, StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        self.run(Some(r), |c| row(c, &built, |row| decode(r, fields, row)))
    }

    /// One integer, seeing this transaction's writes.
    pub async fn fetch_scalar(&mut self, stmt: SelectStatement) -> Result<Option<i64>, StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        Ok(self
            .run(None, |c| row(c, &built, |row| int_at(row, 0)))?
            .flatten())
    }

    pub async fn fetch_all(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Vec<Record>, StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        self.run(Some(r), |c| rows(c, &built, |row| decode(r, fields, row)))
    }

    pub async fn insert(&mut self, stmt: sea_query::InsertStatement) -> Result<(), StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        self.run(None, |c| prepare(c, &built)?.raw_execute())
            .map(|_| ())
    }

    /// Runs a statement; returns the rows it changed.
    pub async fn execute(
        &mut self,
        r: &Resource,
        stmt: impl QueryStatementWriter,
    ) -> Result<u64, StoreError> {
        let built = stmt.build(SqliteQueryBuilder);
        self.run(Some(r), |c| prepare(c, &built)?.raw_execute())
            .map(|n| n as u64)
    }

    /// Runs one of restkit's own DDL statements (a migration step).
    pub async fn execute_ddl(&mut self, sql: &str) -> Result<(), StoreError> {
        self.run(None, |c| c.execute_batch(sql))
    }

    /// A table's columns as this transaction sees them.
    pub async fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.run(None, |c| columns(c, table))
    }

    /// A table's index names as this transaction sees them.
    pub async fn indexes(&mut self, table: &str) -> Result<Vec<String>, StoreError> {
        self.run(None, |c| indexes(c, table))
    }

    /// A table's foreign keys (single-column ones; see
    /// [`ExistingForeignKey`]).
    pub async fn foreign_keys(
        &mut self,
        table: &str,
    ) -> Result<Vec<ExistingForeignKey>, StoreError> {
        self.run(None, |c| {
            Ok(foreign_key_list(c, table)?
                .into_iter()
                .filter(|k| k.from.len() == 1)
                .map(|k| ExistingForeignKey {
                    name: None,
                    column: k.from[0].clone(),
                    target_table: k.table.clone(),
                    target_column: k.to[0].clone(),
                    on_delete: OnDelete::from_sql(&k.on_delete),
                })
                .collect())
        })
    }

    /// Rebuilds `table` so that its foreign keys are `keys` (and those it
    /// has on other columns) and the columns in `not_null` refuse null or
    /// not as it says, SQLite's way (it cannot change a column's
    /// constraints in place): a new table with every column as it is but
    /// for those, and the keys,
    /// the rows copied, the old one dropped, the new one renamed, its
    /// indexes and triggers made again, `AUTOINCREMENT`'s high mark kept
    /// (ids are never reused). Inside the migration's transaction, with
    /// keys not enforced (see [`SqliteStore::begin_ddl`]): all of it or
    /// nothing.
    ///
    /// A table whose definition holds what the rebuild would not carry
    /// over (a `CHECK`, an inline `UNIQUE`, a collation, a generated
    /// column: restkit makes none, a table made by hand may) is refused
    /// with a message saying so, rather than rebuilt without it.
    pub async fn rebuild(
        &mut self,
        table: &str,
        keys: &[ForeignKeySpec],
        not_null: &[(String, bool)],
    ) -> Result<(), StoreError> {
        let built: Built = (
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?".into(),
            Values(vec![table.into()]),
        );
        let create = self
            .run(None, |c| row(c, &built, |row| text_at(row, 0)))?
            .flatten()
            .unwrap_or_default();
        if let Some(word) = not_carried(&create) {
            return Err(StoreError::Schema(format!(
                "table {table} must be rebuilt (SQLite adds a foreign key or changes whether a \
                 column takes null only so), and its definition has {word}, which restkit's \
                 rebuild would not carry over; make that change by hand \
                 (https://sqlite.org/lang_altertable.html#otheralter), then run migrate again"
            )));
        }
        // A parent dropped with keys enforced would run its children's
        // ON DELETE: the rebuild happens only where they are not.
        let built: Built = ("PRAGMA foreign_keys".into(), Values(Vec::new()));
        let enforced = self
            .run(None, |c| row(c, &built, |row| int_at(row, 0)))?
            .flatten();
        if enforced != Some(0) {
            return Err(StoreError::Other(format!(
                "table {table} cannot be rebuilt while foreign keys are enforced"
            )));
        }
        self.run(None, |c| rebuild(c, table, keys, not_null))
    }

    /// A table's columns that refuse null (its primary key aside).
    pub async fn not_null_columns(&mut self, table: &str) -> Result<Vec<String>, StoreError> {
        let built: Built = (
            "SELECT name FROM pragma_table_info(?) WHERE \"notnull\" = 1 AND pk = 0".into(),
            Values(vec![table.into()]),
        );
        self.run(None, |c| {
            rows(c, &built, |row| text_at(row, 0).unwrap_or_default())
        })
    }

    /// Does `table` have a trigger named `name`?
    pub async fn has_trigger(&mut self, table: &str, name: &str) -> Result<bool, StoreError> {
        let built: Built = (
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name = ?"
                .into(),
            Values(vec![table.into(), name.into()]),
        );
        Ok(self.run(None, |c| row(c, &built, |_| ()))?.is_some())
    }

    /// Rows that break a foreign key, by table (SQLite's
    /// `foreign_key_check`), as this transaction sees them.
    pub async fn foreign_key_violations(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        let built: Built = (
            "SELECT \"table\", count(*) FROM pragma_foreign_key_check GROUP BY \"table\"".into(),
            Values(Vec::new()),
        );
        self.run(None, |c| {
            rows(c, &built, |row| {
                (
                    text_at(row, 0).unwrap_or_default(),
                    int_at(row, 1).unwrap_or(0),
                )
            })
        })
    }

    /// Takes a change time for this transaction from the clock row, as
    /// a request's write does when it begins (a migration that changes
    /// rows stamps them with it).
    pub async fn take_change_time(&mut self) -> Result<(), StoreError> {
        let wall = chrono::Utc::now().timestamp_micros();
        let built: Built = (
            advance_clock().to_string(),
            Values(vec![sea_query::Value::BigInt(Some(wall))]),
        );
        self.now = self
            .run(None, |c| row(c, &built, |row| text_at(row, 0)))?
            .flatten()
            .ok_or_else(|| StoreError::Other("the clock row is missing: run migrations".into()))?;
        Ok(())
    }

    /// Makes this request's writes part of the group and waits for the
    /// group's commit: `Ok` only once they are durable.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        let mut w = self.w.take().expect("not yet committed");
        if !self.grouped {
            let done = w.conn.execute_batch("COMMIT").map_err(|e| error(e, None));
            if done.is_err() && !w.conn.is_autocommit() {
                let _ = w.conn.execute_batch("ROLLBACK");
            }
            if done.is_ok() {
                self.side.changes.committed();
            }
            return done.and(enforce_keys(&w.conn));
        }
        if !w.open {
            self.side.finish(&mut w);
            return Err(rolled_back());
        }
        if let Err(e) = w.conn.execute_batch("RELEASE request") {
            let e = error(e, None);
            check_lost(&mut w, &e);
            undo_request(&mut w);
            self.side.finish(&mut w);
            return Err(e);
        }
        let (answer, committed) = oneshot::channel();
        w.group.push(answer);
        self.side.finish(&mut w);
        drop(w);
        committed.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the write was not committed: the store closed".into(),
            ))
        })
    }
}

impl Drop for SqliteWrite {
    /// An abandoned write (an error, a 404, a cancelled request) is rolled
    /// back in place, while the writer is still held, so the next request
    /// never sees it; the rest of its group stays.
    fn drop(&mut self) {
        let Some(mut w) = self.w.take() else {
            return;
        };
        if !self.grouped {
            // Fails harmlessly when SQLite already rolled back.
            let _ = w.conn.execute_batch("ROLLBACK");
            if let Err(e) = enforce_keys(&w.conn) {
                tracing::error!(%e, "foreign keys could not be enforced again after a migration");
            }
            return;
        }
        undo_request(&mut w);
        self.side.finish(&mut w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &tempfile::TempDir, readers: u32) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect(&url, readers, Duration::from_secs(5))
            .await
            .unwrap();
        let mut tx = store.begin_ddl().await.unwrap();
        tx.execute_ddl(
            "CREATE TABLE restkit_clock (id INTEGER PRIMARY KEY, micros INTEGER, stamp TEXT);
             INSERT INTO restkit_clock VALUES (1, 0, '');
             CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE);",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        store
    }

    /// A store whose table holds one row, `taken` (a duplicate to fail on).
    async fn store_with_taken(dir: &tempfile::TempDir) -> SqliteStore {
        let store = store(dir, 2).await;
        let mut tx = store.begin_write().await.unwrap();
        tx.insert(insert("taken")).await.unwrap();
        tx.commit().await.unwrap();
        store
    }

    fn insert(v: &str) -> sea_query::InsertStatement {
        Query::insert()
            .into_table("t")
            .columns(["v"])
            .values_panic([v.into()])
            .to_owned()
    }

    async fn count(store: &SqliteStore) -> i64 {
        let stmt = Query::select()
            .expr(Expr::cust("count(*)"))
            .from("t")
            .to_owned();
        store.fetch_scalar(stmt).await.unwrap().unwrap()
    }

    /// Expensive requests holding every read connection do not hold up
    /// `/health`: its probe has a connection of its own. (Before, it
    /// queued for the read pool's 10 s acquire timeout and failed.)
    #[tokio::test]
    async fn the_health_probe_answers_while_every_read_connection_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 2).await;
        let readers = store.inner.readers.as_ref().unwrap();
        let _busy = readers.slots.acquire_many(2).await.unwrap();
        assert_eq!(readers.slots.available_permits(), 0);
        store.ping().await.unwrap();
    }

    /// Fifty concurrent writes, one of them failing (a duplicate): the 49
    /// others are written, the failing one alone is refused, and they
    /// needed far fewer commits than requests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_in_a_group_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_taken(&dir).await;
        let before = store.commit_groups();
        // The writer is held until all fifty are queued for it, as under
        // load (a slow machine must not make them run one by one).
        let gate = store.begin_write().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.begin_write().await?;
                let v = if i == 25 {
                    "taken".to_string()
                } else {
                    format!("v{i}")
                };
                tx.insert(insert(&v)).await?;
                tx.commit().await
            }));
        }
        let queued = || store.inner.write.queued.load(Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while queued() < 50 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(queued(), 50, "the writes queue for the writer");
        drop(gate);
        let mut failed = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if let Err(e) = task.await.unwrap() {
                failed.push((i, e.to_string()));
            }
        }
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, 25);
        assert!(failed[0].1.contains("unique"), "{failed:?}");
        assert_eq!(count(&store).await, 50);
        let after = store.commit_groups();
        assert_eq!(after.1 - before.1, 49, "49 requests committed");
        assert!(
            after.0 - before.0 < 49,
            "{} commits for 49 requests: no group formed",
            after.0 - before.0
        );
    }

    /// A write that fails with no other request in its group commits an
    /// empty transaction: it is not counted as a commit, so the metrics
    /// never show more commits than the writes they carried.
    #[tokio::test]
    async fn a_lone_failing_write_counts_no_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_taken(&dir).await;
        let before = store.commit_groups();
        let mut tx = store.begin_write().await.unwrap();
        assert!(tx.insert(insert("taken")).await.is_err());
        drop(tx);
        let mut tx = store.begin_write().await.unwrap();
        tx.insert(insert("new")).await.unwrap();
        tx.commit().await.unwrap();
        let after = store.commit_groups();
        assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
        assert_eq!(count(&store).await, 2);
    }

    /// A request abandoned mid-write (its future dropped) leaves nothing,
    /// and the group it was in still commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_write_is_rolled_back_and_the_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 2).await;
        let mut kept = store.begin_write().await.unwrap();
        kept.insert(insert("kept")).await.unwrap();
        // Another request queues for the writer, so `kept` leaves the
        // group open for it; then it gives up.
        let waiting = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin_write().await.unwrap();
                tx.insert(insert("abandoned")).await.unwrap();
                std::future::pending::<()>().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let committed = tokio::spawn(kept.commit());
        tokio::time::sleep(Duration::from_millis(50)).await;
        waiting.abort();
        tokio::time::timeout(Duration::from_secs(5), committed)
            .await
            .expect("the group commits")
            .unwrap()
            .unwrap();
        assert_eq!(count(&store).await, 1);
    }

    /// A cached statement whose bound `LIMIT` changes is not prepared
    /// again (the query planner stability guarantee): without it, every
    /// page of another size or offset parsed its SQL anew.
    #[tokio::test]
    async fn a_new_limit_does_not_prepare_the_statement_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir, 2).await;
        let conn = store
            .inner
            .opener
            .open(false, Arc::new(AtomicBool::new(true)))
            .unwrap();
        for limit in [5, 6, 7] {
            let mut stmt = conn
                .prepare_cached("SELECT v FROM t WHERE v LIKE ? ORDER BY v LIMIT ?")
                .unwrap();
            let n = stmt
                .query_map(rusqlite::params![format!("{limit}%"), limit], |_| Ok(()))
                .unwrap()
                .count();
            assert_eq!(n, 0);
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "prepared again for LIMIT {limit}"
            );
        }
    }

    /// Text is served as stored: valid UTF-8 whole, anything else with
    /// U+FFFD for the bytes that are not UTF-8 (never dropped).
    #[test]
    fn text_is_decoded_whole_or_with_replacement_characters() {
        let text = |bytes: &'static [u8]| value_of(FieldType::String, ValueRef::Text(bytes));
        assert_eq!(text("café ✓".as_bytes()), Value::from("café ✓"));
        assert_eq!(text(b"caf\xe9!"), Value::from("caf\u{FFFD}!"));
        assert_eq!(
            value_of(FieldType::Json, ValueRef::Text(b"{\"a\":1}")),
            serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn urls() {
        assert_eq!(location("sqlite::memory:").unwrap(), None);
        assert_eq!(location("sqlite://x?mode=memory").unwrap(), None);
        assert_eq!(
            location("sqlite://my%20file.db?mode=rwc").unwrap(),
            Some(PathBuf::from("my file.db"))
        );
        assert_eq!(
            location("sqlite:///abs/x.db").unwrap(),
            Some(PathBuf::from("/abs/x.db"))
        );
        assert!(location("sqlite://x.db?cache=shared").is_err());
        assert!(location("sqlite://").is_err());
    }
}
