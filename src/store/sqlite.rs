//! SQLite: pools, pragmas and row decoding (§13).
//!
//! Two pools over one file: many readers, and exactly one writer, so writes
//! are serialized inside the process and clients never see "database is
//! locked". WAL lets readers proceed during a write; `busy_timeout` covers
//! other processes on the same file; `synchronous = NORMAL` is durable
//! under WAL except for the last transactions on power loss.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_query::{Expr, Query, SelectStatement, SqliteQueryBuilder};
use sea_query_sqlx::{SqlxBinder, SqlxValues};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::Sqlite;
// Every SQL string here comes from sea-query (identifiers from the model,
// values bound) or is a fixed literal: that is the audit AssertSqlSafe asks for.
use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};

use super::sql::Write;
use super::{Dialect, Record, StoreError};
use crate::model::{FieldType, Resource};

mod watchdog {
    //! Cancels read statements that run too long (§6.9), without a cost
    //! per query: each read connection gets one SQLite progress handler
    //! at connect time. SQLite calls it every [`OPS`] virtual-machine
    //! instructions of a running statement; it tells executions apart by
    //! (busy statement, its run count), restarts the clock on a new one,
    //! and returns `false` — SQLite then stops the statement with
    //! `SQLITE_INTERRUPT` — once one has run past the limit.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use libsqlite3_sys as ffi;
    use sqlx::SqliteConnection;

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
    pub async fn install(
        conn: &mut SqliteConnection,
        limit: Duration,
        enforce: Arc<AtomicBool>,
    ) -> Result<(), sqlx::Error> {
        if limit.is_zero() {
            return Ok(());
        }
        let mut handle = conn.lock_handle().await?;
        // The handler is owned by this connection and dropped with it, so
        // the pointer outlives every call.
        let db = handle.as_raw_handle().as_ptr() as usize;
        let mut current = (0usize, -1i32, Instant::now());
        handle.set_progress_handler(OPS, move || {
            // SAFETY: see `running`; SQLite invokes this on the executing
            // thread of connection `db`.
            let (stmt, runs) = unsafe { running(db as *mut ffi::sqlite3) };
            let now = Instant::now();
            if (stmt, runs) != (current.0, current.1) {
                current = (stmt, runs, now);
                return true;
            }
            now.duration_since(current.2) < limit || !enforce.load(Ordering::Relaxed)
        });
        Ok(())
    }
}

/// SQLite result codes (primary code: the low byte of an extended one)
/// that mean the file cannot be used right now.
pub fn unavailable(code: Option<&str>) -> bool {
    let Some(code) = code.and_then(|c| c.parse::<u32>().ok()) else {
        return false;
    };
    // BUSY 5, LOCKED 6, READONLY 8, IOERR 10, CORRUPT 11, FULL 13,
    // CANTOPEN 14, NOTADB 26.
    matches!(code & 0xff, 5 | 6 | 8 | 10 | 11 | 13 | 14 | 26)
}

#[derive(Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    /// `/health`'s own connection: a probe must not queue behind the
    /// requests filling the read pool (50 expensive reads held `/health`
    /// for 5 s), or a load balancer takes a busy instance for a dead one.
    health: SqlitePool,
    /// Whether the writer's statement watchdog is on (off while migrating).
    write_enforced: Arc<AtomicBool>,
    /// `sqlite::memory:`: one connection is the whole database.
    in_memory: bool,
}

/// An open write transaction on the single writer connection.
///
/// The transaction is driven with plain `BEGIN IMMEDIATE` / `COMMIT` /
/// `ROLLBACK` rather than sqlx's transaction manager: when the statement
/// watchdog interrupts a write, SQLite rolls the transaction back by
/// itself, sqlx's manager does not know it, and its next `begin` would
/// open a savepoint inside a transaction that never commits again (every
/// later write acknowledged and lost). Here a failed or abandoned
/// transaction is rolled back before the connection returns to the pool,
/// and a connection found still inside a transaction is closed.
pub struct SqliteWrite {
    conn: Option<PoolConnection<Sqlite>>,
    pub now: String,
    /// An in-memory database lives in its one connection: never close it.
    in_memory: bool,
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

/// A pool of read-only connections, each with its statement watchdog.
async fn read_pool(
    opts: &SqliteConnectOptions,
    size: u32,
    acquire: Duration,
    statement_timeout: Duration,
) -> Result<SqlitePool, StoreError> {
    SqlitePoolOptions::new()
        .max_connections(size)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let always = Arc::new(AtomicBool::new(true));
            Box::pin(async move { watchdog::install(conn, statement_timeout, always).await })
        })
        .acquire_timeout(acquire)
        .connect_with(opts.clone().read_only(true))
        .await
        .map_err(err)
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(Dialect::Sqlite, e, None)
}

impl SqliteStore {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        statement_timeout: Duration,
    ) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .statement_cache_capacity(256);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            create_private(opts.get_filename());
        }
        // `test_before_acquire(false)`: an SQLite connection is a local file
        // handle that cannot go stale, and the default ping costs a round
        // trip to the connection's worker thread before every query.
        // The single writer is bounded too: a long filtered DELETE must not
        // hold the only writer (it is interrupted, rolled back, and 503).
        let write_enforced = Arc::new(AtomicBool::new(true));
        let enforce = write_enforced.clone();
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                let enforce = enforce.clone();
                Box::pin(async move { watchdog::install(conn, statement_timeout, enforce).await })
            })
            .acquire_timeout(Duration::from_secs(10))
            // An in-memory database lives as long as its one connection.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.clone())
            .await
            .map_err(err)?;
        let (read, health) = if in_memory {
            (write.clone(), write.clone())
        } else {
            // Probes come one at a time and take microseconds: a wait of
            // 2 s for the health connection means the database is stuck.
            let health = read_pool(&opts, 1, Duration::from_secs(2), statement_timeout).await?;
            let read = read_pool(
                &opts,
                max_connections.max(1),
                Duration::from_secs(10),
                statement_timeout,
            )
            .await?;
            (read, health)
        };
        Ok(SqliteStore {
            read,
            write,
            health,
            write_enforced,
            in_memory,
        })
    }

    /// Connections (pool, in use, idle) of the read and write pools.
    pub fn pool_state(&self) -> [(&'static str, u32, u32); 2] {
        let state = |p: &SqlitePool| {
            let idle = p.num_idle() as u32;
            (p.size().saturating_sub(idle), idle)
        };
        let (r_use, r_idle) = state(&self.read);
        let (w_use, w_idle) = state(&self.write);
        [("read", r_use, r_idle), ("write", w_use, w_idle)]
    }

    /// What a failed read means. A file overwritten under a connection
    /// (a failing disk, a stray `cp`) can fail a statement with a plain
    /// error ("no such table") rather than NOTADB or CORRUPT: when the
    /// schema cannot be read either, the database is unavailable (503,
    /// and served again once the file is back), not a bug (500).
    async fn read_failed(&self, e: sqlx::Error) -> StoreError {
        match err(e) {
            StoreError::Other(cause) if self.ping().await.is_err() => {
                StoreError::Unavailable(cause)
            }
            other => other,
        }
    }

    /// Reads the schema, not just `SELECT 1` (which never touches the
    /// file): a database that cannot be read fails here. On `/health`'s
    /// own connection, so a full read pool does not make it wait.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT count(*) FROM sqlite_schema")
            .execute(&self.health)
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// Every row of `stmt`, from a read connection.
    async fn rows(&self, stmt: SelectStatement) -> Result<Vec<SqliteRow>, StoreError> {
        let (sql, values) = stmt.build_sqlx(SqliteQueryBuilder);
        match sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_all(&self.read)
            .await
        {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.read_failed(e).await),
        }
    }

    /// The first row of `stmt`, if any, from a read connection.
    async fn row(&self, stmt: SelectStatement) -> Result<Option<SqliteRow>, StoreError> {
        let (sql, values) = stmt.build_sqlx(SqliteQueryBuilder);
        match sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_optional(&self.read)
            .await
        {
            Ok(row) => Ok(row),
            Err(e) => Err(self.read_failed(e).await),
        }
    }

    pub async fn fetch_all(
        &self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Vec<Record>, StoreError> {
        let rows = self.rows(stmt).await?;
        Ok(rows.iter().map(|row| decode(r, fields, row)).collect())
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
        let rows = self.rows(stmt).await?;
        let mark = rows
            .first()
            .and_then(|row| row.try_get_unchecked::<Option<String>, _>(0).ok().flatten())
            .ok_or_else(|| StoreError::Other("the clock row is missing: run migrations".into()))?;
        let records = rows
            .iter()
            .filter(|row| {
                row.try_get_unchecked::<Option<i64>, _>(1)
                    .ok()
                    .flatten()
                    .is_some()
            })
            .map(|row| decode_from(r, fields, row, 2))
            .collect();
        Ok((mark, records))
    }

    pub async fn fetch_optional(
        &self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Option<Record>, StoreError> {
        let row = self.row(stmt).await?;
        Ok(row.map(|row| decode(r, fields, &row)))
    }

    /// The first column of the first row; `None` for no row or NULL.
    pub async fn fetch_scalar(&self, stmt: SelectStatement) -> Result<Option<i64>, StoreError> {
        let row = self.row(stmt).await?;
        Ok(row.and_then(|row| row.try_get_unchecked::<Option<i64>, _>(0).ok().flatten()))
    }

    /// The latest committed change time: the one writer holds the clock
    /// row from its first statement, so nothing can still commit at or
    /// before it.
    pub async fn horizon(&self) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT stamp FROM restkit_clock WHERE id = 1")
            .fetch_optional(&self.read)
            .await;
        match row {
            Ok(Some(row)) => row.try_get::<String, _>(0).map_err(err),
            Ok(None) => Err(StoreError::Other(
                "the clock row is missing: run migrations".into(),
            )),
            Err(e) => Err(self.read_failed(e).await),
        }
    }

    /// Begins a transaction on the single writer and takes its change time
    /// from the clock row ([`advance_clock`]). `BEGIN IMMEDIATE` takes
    /// SQLite's write lock at once, before the clock is read.
    pub async fn begin_write(&self) -> Result<SqliteWrite, StoreError> {
        let mut tx = self.begin_immediate().await?;
        let wall = chrono::Utc::now().timestamp_micros();
        let row = sqlx::query(AssertSqlSafe(advance_clock()))
            .bind(wall)
            .fetch_optional(tx.conn())
            .await
            .map_err(err)?
            .ok_or_else(|| StoreError::Other("the clock row is missing: run migrations".into()))?;
        tx.now = row.try_get::<String, _>(0).map_err(err)?;
        Ok(tx)
    }

    /// A transaction on the single writer that does not touch the clock
    /// (which a migration may still have to create): every statement of a
    /// migration runs in one of these, so a migration is applied whole or
    /// not at all, and no other writer — another process sharing the file
    /// included — runs between its statements (a delete while the
    /// tombstone trigger is being re-created would leave no tombstone).
    pub async fn begin_ddl(&self) -> Result<SqliteWrite, StoreError> {
        self.begin_immediate().await
    }

    async fn begin_immediate(&self) -> Result<SqliteWrite, StoreError> {
        let mut conn = self.write.acquire().await.map_err(err)?;
        if sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .is_err()
        {
            // Left inside a transaction (a request cancelled mid-BEGIN):
            // roll it back and begin again; a connection that cannot is
            // closed (never an in-memory one: closing it is the database).
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
                if !self.in_memory {
                    conn.close_on_drop();
                }
                return Err(err(e));
            }
        }
        Ok(SqliteWrite {
            conn: Some(conn),
            now: String::new(),
            in_memory: self.in_memory,
        })
    }

    pub async fn fetch_id_times(
        &self,
        stmt: SelectStatement,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = self.rows(stmt).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>(0).map_err(err)?,
                    r.try_get::<String, _>(1).map_err(err)?,
                ))
            })
            .collect()
    }

    /// Lifts (`false`) or restores the writer's statement time limit:
    /// migrations may rightly run long.
    pub fn bound_writes(&self, on: bool) {
        self.write_enforced.store(on, Ordering::Relaxed);
    }

    pub async fn table_is_empty(&self, table: &str) -> Result<bool, StoreError> {
        if columns(&self.write, table).await?.is_empty() {
            return Ok(true);
        }
        let stmt = Query::select()
            .expr(Expr::val(1))
            .from(sea_query::Alias::new(table))
            .limit(1)
            .to_owned();
        let (sql, values) = stmt.build_sqlx(SqliteQueryBuilder);
        let row = sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_optional(&self.write)
            .await
            .map_err(err)?;
        Ok(row.is_none())
    }
}

/// A table's columns: (name, declared type); empty when it does not exist.
async fn columns<'e, E>(db: E, table: &str) -> Result<Vec<(String, String)>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query("SELECT name, type FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(db)
        .await
        .map_err(err)?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0).map_err(err)?,
                r.try_get::<String, _>(1).map_err(err)?,
            ))
        })
        .collect()
}

/// Names of a table's indexes.
async fn indexes<'e, E>(db: E, table: &str) -> Result<Vec<String>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query("SELECT name FROM pragma_index_list(?)")
        .bind(table)
        .fetch_all(db)
        .await
        .map_err(err)?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(err))
        .collect()
}

/// Builds a record from a row whose columns are `fields`, in order. SQLite
/// is dynamically typed, so values are decoded by the declared type, leniently.
fn decode(r: &Resource, fields: &[usize], row: &SqliteRow) -> Record {
    decode_from(r, fields, row, 0)
}

/// As [`decode`], the fields starting at column `first`.
fn decode_from(r: &Resource, fields: &[usize], row: &SqliteRow, first: usize) -> Record {
    let mut rec = Record::with_capacity(fields.len());
    for (i, &f) in fields.iter().enumerate() {
        let i = i + first;
        let field = &r.fields[f];
        let v = match field.ty {
            FieldType::Integer => row
                .try_get_unchecked::<Option<i64>, _>(i)
                .ok()
                .flatten()
                .map(Value::from),
            FieldType::Number => row
                .try_get_unchecked::<Option<f64>, _>(i)
                .ok()
                .flatten()
                .map(Value::from),
            FieldType::Boolean => row
                .try_get_unchecked::<Option<bool>, _>(i)
                .ok()
                .flatten()
                .map(Value::from),
            FieldType::String | FieldType::DateTime => row
                .try_get_unchecked::<Option<String>, _>(i)
                .ok()
                .flatten()
                .map(Value::String),
            FieldType::Json => row
                .try_get_unchecked::<Option<String>, _>(i)
                .ok()
                .flatten()
                .map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s))),
        };
        rec.insert(field.name.clone(), v.unwrap_or(Value::Null));
    }
    rec
}

impl SqliteWrite {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_deref_mut()
            .expect("a write transaction holds its connection until commit or drop")
    }

    /// Every row of a built statement, in this transaction; a unique or
    /// foreign-key violation names a field of `r`.
    async fn rows(
        &mut self,
        (sql, values): (String, SqlxValues),
        r: Option<&Resource>,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_all(self.conn())
            .await
            .map_err(|e| StoreError::from_sqlx(Dialect::Sqlite, e, r))
    }

    /// As [`SqliteWrite::rows`], the first row if any.
    async fn row(
        &mut self,
        (sql, values): (String, SqlxValues),
        r: Option<&Resource>,
    ) -> Result<Option<SqliteRow>, StoreError> {
        sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_optional(self.conn())
            .await
            .map_err(|e| StoreError::from_sqlx(Dialect::Sqlite, e, r))
    }

    pub async fn returning(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: Write,
    ) -> Result<Option<Record>, StoreError> {
        let built = match stmt {
            Write::Insert(s) => s.build_sqlx(SqliteQueryBuilder),
            Write::Update(s) => s.build_sqlx(SqliteQueryBuilder),
        };
        let row = self.row(built, Some(r)).await?;
        Ok(row.map(|row| decode(r, fields, &row)))
    }

    pub async fn fetch_optional(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Option<Record>, StoreError> {
        let row = self
            .row(stmt.build_sqlx(SqliteQueryBuilder), Some(r))
            .await?;
        Ok(row.map(|row| decode(r, fields, &row)))
    }

    /// One integer, seeing this transaction's writes.
    pub async fn fetch_scalar(&mut self, stmt: SelectStatement) -> Result<Option<i64>, StoreError> {
        let row = self.row(stmt.build_sqlx(SqliteQueryBuilder), None).await?;
        Ok(row.and_then(|row| row.try_get_unchecked::<Option<i64>, _>(0).ok().flatten()))
    }

    pub async fn fetch_all(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Vec<Record>, StoreError> {
        let rows = self
            .rows(stmt.build_sqlx(SqliteQueryBuilder), Some(r))
            .await?;
        Ok(rows.iter().map(|row| decode(r, fields, row)).collect())
    }

    pub async fn insert(&mut self, stmt: sea_query::InsertStatement) -> Result<(), StoreError> {
        let (sql, values) = stmt.build_sqlx(SqliteQueryBuilder);
        sqlx::query_with(AssertSqlSafe(sql), values)
            .execute(self.conn())
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// Runs a statement; returns the rows it changed.
    pub async fn execute(
        &mut self,
        r: &Resource,
        stmt: impl SqlxBinder,
    ) -> Result<u64, StoreError> {
        let (sql, values) = stmt.build_sqlx(SqliteQueryBuilder);
        sqlx::query_with(AssertSqlSafe(sql), values)
            .execute(self.conn())
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| StoreError::from_sqlx(Dialect::Sqlite, e, Some(r)))
    }

    /// Runs one of restkit's own DDL statements (a migration step).
    pub async fn execute_ddl(&mut self, sql: &str) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(sql.to_string()))
            .execute(self.conn())
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// A table's columns as this transaction sees them.
    pub async fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>, StoreError> {
        columns(self.conn(), table).await
    }

    /// A table's index names as this transaction sees them.
    pub async fn indexes(&mut self, table: &str) -> Result<Vec<String>, StoreError> {
        indexes(self.conn(), table).await
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        let mut conn = self.conn.take().expect("not yet committed");
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                if !self.in_memory && !in_autocommit(&mut conn).await {
                    conn.close_on_drop();
                }
                Err(err(e))
            }
        }
    }
}

impl Drop for SqliteWrite {
    /// An abandoned transaction (an error, a 404, a cancelled request) is
    /// rolled back before its connection serves anyone else: the rollback
    /// runs while the connection is still held, so the next writer waits
    /// for it. Without a runtime to run it on, the connection is closed,
    /// which rolls back too.
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let in_memory = self.in_memory;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    // Fails harmlessly when SQLite already rolled back.
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    if !in_memory && !in_autocommit(&mut conn).await {
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) if !in_memory => conn.close_on_drop(),
            Err(_) => {}
        }
    }
}

/// Is the connection outside any transaction?
async fn in_autocommit(conn: &mut SqliteConnection) -> bool {
    match conn.lock_handle().await {
        // SAFETY: a live handle, used on the task that holds its lock;
        // sqlite3_get_autocommit only reads the connection's state.
        Ok(mut handle) => unsafe {
            libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) != 0
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expensive requests holding every read connection do not hold up
    /// `/health`: its probe has a connection of its own. (Before, it
    /// queued for the read pool's 10 s acquire timeout and failed.)
    #[tokio::test]
    async fn the_health_probe_answers_while_every_read_connection_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("h.db").display());
        let store = SqliteStore::connect(&url, 2, Duration::from_secs(5))
            .await
            .unwrap();
        let _busy = [
            store.read.acquire().await.unwrap(),
            store.read.acquire().await.unwrap(),
        ];
        assert_eq!(store.read.num_idle(), 0);
        store.ping().await.unwrap();
    }
}
