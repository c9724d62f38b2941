//! PostgreSQL: the pool, transactions and row decoding (§13).
//!
//! One pool serves reads and writes; `/health` has a connection of its
//! own. Every connection starts with `statement_timeout` set, so a runaway
//! statement is cancelled by the server itself (SQLSTATE 57014, answered
//! 503 `QUERY_TIMEOUT` as on SQLite), and with
//! `idle_in_transaction_session_timeout`, so a connection lost in the
//! middle of a transaction cannot hold locks for long.
//!
//! Write transactions run at once, on every instance: each takes its
//! change time from `restkit_stamp` (see `migrate::postgres_clock`),
//! which marks it in flight until it ends, and a sync read marks no later
//! than [`PgStore::horizon`], before which nothing in flight can commit.
//! What a write decides from is read with `FOR UPDATE`
//! ([`PgWrite::fetch_optional`]): a PATCH's merge and an `If-Match` check
//! see the row as it is committed, and hold it until they write.

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_query::{PostgresQueryBuilder, SelectStatement};
use sea_query_sqlx::{SqlxBinder, SqlxValues};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row};

use super::sql::Write;
use super::{Dialect, Record, StoreError};
use crate::model::{FieldType, Resource};

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// `/health`'s own connection (see the SQLite store's).
    health: PgPool,
    /// While the server is unreachable, requests fail at once instead of
    /// each waiting `connect_timeout`: until this time (Unix ms; 0: up),
    /// then one request probes while the others keep failing fast.
    down_until: Arc<AtomicI64>,
    /// Told of every commit (live feeds, §16).
    changes: Arc<super::changes::Changes>,
    /// How long a probe may take: the connect timeout.
    probe: Duration,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Does `e` say the server cannot be reached — no connection could be
/// had within the connect timeout, or the server refuses logins while it
/// starts — rather than that one connection or statement failed (a
/// connection ended by the server is replaced by the next request)?
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

/// An open write transaction (sqlx's: dropped without commit, it is
/// rolled back before the connection serves anyone else).
pub struct PgWrite {
    tx: sqlx::Transaction<'static, Postgres>,
    changes: Arc<super::changes::Changes>,
    pub now: String,
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(Dialect::Postgres, e, None)
}

/// This transaction's change time, handed out by `restkit_stamp`, in
/// its stored text form.
fn take_stamp() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {} FROM restkit_stamp($1, 1) AS m",
            Dialect::Postgres.stamp_sql("m")
        )
    })
}

/// The horizon (see `migrate::postgres_clock`) in stored text form.
fn read_horizon() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {} FROM restkit_horizon() AS h",
            Dialect::Postgres.stamp_sql("h")
        )
    })
}

const NO_CLOCK: &str = "the change clock is missing: run migrations";

/// Connection settings from `url` (libpq's URL form: `sslmode`,
/// `sslrootcert`, `options`, `application_name` and the rest).
fn options(url: &str, statement_timeout: Duration) -> Result<PgConnectOptions, StoreError> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Other(format!("bad PostgreSQL URL: {e}")))?
        .application_name("restkit")
        .statement_cache_capacity(256);
    let mut settings = vec![
        // Never `0` (no limit) for idle transactions: one whose client
        // vanished holds its rows' locks and holds back the sync horizon.
        ("idle_in_transaction_session_timeout", "30000".to_string()),
        // `ESCAPE '\'` in LIKE patterns means one backslash.
        ("standard_conforming_strings", "on".to_string()),
        ("timezone", "UTC".to_string()),
    ];
    settings.push((
        "statement_timeout",
        statement_timeout.as_millis().to_string(),
    ));
    Ok(opts.options(settings))
}

impl PgStore {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        statement_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<PgStore, StoreError> {
        let opts = options(url, statement_timeout)?;
        // No ping before every use (a round trip per statement): a
        // connection the server dropped fails its statement as I/O (503)
        // and is closed, not returned to the pool.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(connect_timeout)
            .connect_with(opts.clone())
            .await
            .map_err(err)?;
        let health = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(connect_timeout.min(Duration::from_secs(2)))
            .connect_lazy_with(opts);
        Ok(PgStore {
            pool,
            health,
            down_until: Arc::new(AtomicI64::new(0)),
            changes: Arc::default(),
            probe: connect_timeout,
        })
    }

    /// Lets a request reach the server, or refuses it at once while the
    /// server is known to be down (one request at a time probes).
    fn gate(&self) -> Result<(), StoreError> {
        let until = self.down_until.load(Ordering::Relaxed);
        if until == 0 {
            return Ok(());
        }
        let now = now_ms();
        let probe_until = now + self.probe.as_millis() as i64 + 1000;
        if now >= until
            && self
                .down_until
                .compare_exchange(until, probe_until, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(());
        }
        Err(StoreError::Unavailable(
            "the database could not be reached a moment ago; trying again shortly".into(),
        ))
    }

    /// Records how a call that reached for the server went.
    fn pass<T>(&self, r: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        match r {
            Ok(v) => {
                if self.down_until.load(Ordering::Relaxed) != 0 {
                    self.down_until.store(0, Ordering::Relaxed);
                }
                Ok(v)
            }
            Err(e) => {
                if unreachable(&e) {
                    self.down_until.store(now_ms() + 1000, Ordering::Relaxed);
                }
                Err(err(e))
            }
        }
    }

    /// Connections (pool, in use, idle): one pool serves reads and writes.
    pub fn pool_state(&self) -> [(&'static str, u32, u32); 1] {
        let idle = self.pool.num_idle() as u32;
        [("read", self.pool.size().saturating_sub(idle), idle)]
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.gate()?;
        let done = sqlx::query("SELECT 1").execute(&self.health).await;
        self.pass(done).map(|_| ())
    }

    /// Every row of `stmt`, through the breaker.
    async fn rows(&self, stmt: SelectStatement) -> Result<Vec<PgRow>, StoreError> {
        let (sql, values) = stmt.build_sqlx(PostgresQueryBuilder);
        self.gate()?;
        let rows = sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_all(&self.pool)
            .await;
        self.pass(rows)
    }

    /// The first row of `stmt`, if any, through the breaker.
    async fn row(&self, stmt: SelectStatement) -> Result<Option<PgRow>, StoreError> {
        let (sql, values) = stmt.build_sqlx(PostgresQueryBuilder);
        self.gate()?;
        let row = sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_optional(&self.pool)
            .await;
        self.pass(row)
    }

    pub async fn fetch_all(
        &self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Vec<Record>, StoreError> {
        let rows = self.rows(stmt).await?;
        rows.iter().map(|row| decode(r, fields, row, 0)).collect()
    }

    /// Rows of [`super::sql::select_list_with_mark`] (see the SQLite
    /// store's).
    pub async fn fetch_all_with_mark(
        &self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<(String, Vec<Record>), StoreError> {
        let rows = self.rows(stmt).await?;
        let mark = rows
            .first()
            .and_then(|row| row.try_get::<Option<String>, _>(0).ok().flatten())
            .ok_or_else(|| StoreError::Other(NO_CLOCK.into()))?;
        let records = rows
            .iter()
            .filter(|row| integer(row, 1).is_some())
            .map(|row| decode(r, fields, row, 2))
            .collect::<Result<_, _>>()?;
        Ok((mark, records))
    }

    pub async fn fetch_optional(
        &self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Option<Record>, StoreError> {
        let row = self.row(stmt).await?;
        row.map(|row| decode(r, fields, &row, 0)).transpose()
    }

    pub async fn fetch_scalar(&self, stmt: SelectStatement) -> Result<Option<i64>, StoreError> {
        Ok(self.row(stmt).await?.and_then(|row| integer(&row, 0)))
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

    /// Begins a transaction and takes its change time ([`take_stamp`]).
    pub async fn begin_write(&self) -> Result<PgWrite, StoreError> {
        let mut tx = self.begin_ddl().await?;
        tx.take_change_time().await?;
        Ok(tx)
    }

    /// Told of every commit.
    pub fn changes(&self) -> &Arc<super::changes::Changes> {
        &self.changes
    }

    /// The latest change time at or before which no transaction in
    /// flight can still commit.
    pub async fn horizon(&self) -> Result<String, StoreError> {
        self.gate()?;
        let row = sqlx::query(AssertSqlSafe(read_horizon()))
            .fetch_one(&self.pool)
            .await;
        let row = self.pass(row)?;
        row.try_get::<Option<String>, _>(0)
            .map_err(err)?
            .ok_or_else(|| StoreError::Other(NO_CLOCK.into()))
    }

    /// A transaction that does not touch the clock (migrations).
    pub async fn begin_ddl(&self) -> Result<PgWrite, StoreError> {
        self.gate()?;
        let tx = self.pool.begin().await;
        let tx = self.pass(tx)?;
        Ok(PgWrite {
            tx,
            changes: self.changes.clone(),
            now: String::new(),
        })
    }

    pub async fn table_is_empty(&self, table: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_ddl().await?;
        if tx.columns(table).await?.is_empty() {
            return Ok(true);
        }
        let stmt = sea_query::Query::select()
            .expr(sea_query::Expr::val(1))
            .from(sea_query::Alias::new(table))
            .limit(1)
            .to_owned();
        Ok(tx.fetch_scalar(stmt).await?.is_none())
    }
}

/// An integer column of any width (`count(*)` is `bigint`, a literal
/// `1` is `integer`); `None` for NULL.
fn integer(row: &PgRow, i: usize) -> Option<i64> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return v.map(i64::from);
    }
    row.try_get::<Option<i16>, _>(i)
        .ok()
        .flatten()
        .map(i64::from)
}

/// Builds a record from a row whose columns from `first` on are `fields`,
/// decoding each as its declared type — exactly the column type restkit
/// creates, which migration checked. A value of another type is an error
/// naming the field, never a silent `null`.
fn decode(r: &Resource, fields: &[usize], row: &PgRow, first: usize) -> Result<Record, StoreError> {
    let mut rec = Record::with_capacity(fields.len());
    for (i, &f) in fields.iter().enumerate() {
        let i = i + first;
        let field = &r.fields[f];
        let v = match field.ty {
            FieldType::Integer => row.try_get::<Option<i64>, _>(i).map(|v| v.map(Value::from)),
            FieldType::Number => row.try_get::<Option<f64>, _>(i).map(|v| v.map(Value::from)),
            FieldType::Boolean => row
                .try_get::<Option<bool>, _>(i)
                .map(|v| v.map(Value::from)),
            FieldType::String
            | FieldType::DateTime
            | FieldType::Date
            | FieldType::Time
            | FieldType::Uuid => row
                .try_get::<Option<String>, _>(i)
                .map(|v| v.map(Value::String)),
            FieldType::Decimal { scale, .. } => row.try_get::<Option<i64>, _>(i).map(|v| {
                v.map(|units| Value::String(crate::model::value::format_decimal(units, scale)))
            }),
            FieldType::Json => row
                .try_get::<Option<String>, _>(i)
                .map(|v| v.map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s)))),
        }
        .map_err(|e| {
            StoreError::Schema(format!(
                "{} field '{}' (column {}.{}): {e}",
                r.name, field.name, r.table, field.column
            ))
        })?;
        rec.insert(field.name.clone(), v.unwrap_or(Value::Null));
    }
    Ok(rec)
}

impl PgWrite {
    /// Every row of a built statement, in this transaction; a unique or
    /// foreign-key violation names a field of `r`.
    async fn rows(
        &mut self,
        (sql, values): (String, SqlxValues),
        r: Option<&Resource>,
    ) -> Result<Vec<PgRow>, StoreError> {
        sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| StoreError::from_sqlx(Dialect::Postgres, e, r))
    }

    /// As [`PgWrite::rows`], the first row if any.
    async fn row(
        &mut self,
        (sql, values): (String, SqlxValues),
        r: Option<&Resource>,
    ) -> Result<Option<PgRow>, StoreError> {
        sqlx::query_with(AssertSqlSafe(sql), values)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(|e| StoreError::from_sqlx(Dialect::Postgres, e, r))
    }

    pub async fn returning(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: Write,
    ) -> Result<Option<Record>, StoreError> {
        let built = match stmt {
            Write::Insert(s) => s.build_sqlx(PostgresQueryBuilder),
            Write::Update(s) => s.build_sqlx(PostgresQueryBuilder),
        };
        let row = self.row(built, Some(r)).await?;
        row.map(|row| decode(r, fields, &row, 0)).transpose()
    }

    /// Reads one row and locks it until the transaction ends: writers run
    /// at once here, so what a write decides from (a PATCH's merge, an
    /// `If-Match` check, an owner check) must not change under it.
    pub async fn fetch_optional(
        &mut self,
        r: &Resource,
        fields: &[usize],
        mut stmt: SelectStatement,
    ) -> Result<Option<Record>, StoreError> {
        stmt.lock_with_tables(sea_query::LockType::Update, [super::sql::table_of(r)]);
        let row = self
            .row(stmt.build_sqlx(PostgresQueryBuilder), Some(r))
            .await?;
        row.map(|row| decode(r, fields, &row, 0)).transpose()
    }

    pub async fn fetch_scalar(&mut self, stmt: SelectStatement) -> Result<Option<i64>, StoreError> {
        let row = self
            .row(stmt.build_sqlx(PostgresQueryBuilder), None)
            .await?;
        Ok(row.and_then(|row| integer(&row, 0)))
    }

    pub async fn fetch_all(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: SelectStatement,
    ) -> Result<Vec<Record>, StoreError> {
        let rows = self
            .rows(stmt.build_sqlx(PostgresQueryBuilder), Some(r))
            .await?;
        rows.iter().map(|row| decode(r, fields, row, 0)).collect()
    }

    /// Runs a restkit-owned insert. Explicit keys (the demo's seed) leave
    /// the table's identity sequence behind them: it is moved past the
    /// largest key, so the next generated id does not collide.
    pub async fn insert(&mut self, stmt: sea_query::InsertStatement) -> Result<(), StoreError> {
        let (sql, values) = stmt.build_sqlx(PostgresQueryBuilder);
        let table = inserted_table(&sql);
        sqlx::query_with(AssertSqlSafe(sql), values)
            .execute(&mut *self.tx)
            .await
            .map_err(err)?;
        if let Some(table) = table {
            self.follow_keys(&table).await?;
        }
        Ok(())
    }

    /// Moves `table`'s identity sequence (if it has one) past its largest
    /// key.
    async fn follow_keys(&mut self, table: &str) -> Result<(), StoreError> {
        let quoted = format!("\"{table}\"");
        let seq = sqlx::query(
            "SELECT a.attname::text, pg_get_serial_sequence($1, a.attname)::text \
             FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attidentity <> ''",
        )
        .bind(&quoted)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(err)?;
        let Some(row) = seq else { return Ok(()) };
        let column: String = row.try_get(0).map_err(err)?;
        let sequence: Option<String> = row.try_get(1).map_err(err)?;
        let Some(sequence) = sequence else {
            return Ok(());
        };
        // Identifiers come from the model and the catalog, checked at
        // start-up to be letters, digits, '_' and '-'.
        let sql = format!(
            "SELECT setval($1::regclass, GREATEST(COALESCE(MAX(\"{column}\"), 0), \
             (SELECT last_value FROM {sequence}))) FROM {quoted}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&sequence)
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(err)
    }

    pub async fn execute(
        &mut self,
        r: &Resource,
        stmt: impl SqlxBinder,
    ) -> Result<u64, StoreError> {
        let (sql, values) = stmt.build_sqlx(PostgresQueryBuilder);
        sqlx::query_with(AssertSqlSafe(sql), values)
            .execute(&mut *self.tx)
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| StoreError::from_sqlx(Dialect::Postgres, e, Some(r)))
    }

    pub async fn execute_ddl(&mut self, sql: &str) -> Result<(), StoreError> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// A table's columns (name, data type) in the current schema.
    pub async fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(err)?, r.try_get(1).map_err(err)?)))
            .collect()
    }

    /// Takes this transaction's change time ([`take_stamp`]).
    pub async fn take_change_time(&mut self) -> Result<(), StoreError> {
        let wall = chrono::Utc::now().timestamp_micros();
        let row = sqlx::query(AssertSqlSafe(take_stamp()))
            .bind(wall)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(err)?
            .ok_or_else(|| StoreError::Other(NO_CLOCK.into()))?;
        self.now = row.try_get::<String, _>(0).map_err(err)?;
        Ok(())
    }

    /// A table's single-column foreign keys in the current schema.
    pub async fn foreign_keys(
        &mut self,
        table: &str,
    ) -> Result<Vec<super::ExistingForeignKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.conname::text, a.attname::text, t.relname::text, fa.attname::text, \
             CASE c.confdeltype WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE' \
             WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' ELSE 'NO ACTION' END \
             FROM pg_constraint c \
             JOIN pg_class s ON s.oid = c.conrelid \
             JOIN pg_class t ON t.oid = c.confrelid \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
             JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1] \
             WHERE c.contype = 'f' AND cardinality(c.conkey) = 1 AND s.relname = $1 \
             AND s.relnamespace = current_schema()::regnamespace",
        )
        .bind(table)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let text = |i: usize| r.try_get::<String, _>(i).map_err(err);
                Ok(super::ExistingForeignKey {
                    name: Some(text(0)?),
                    column: text(1)?,
                    target_table: text(2)?,
                    target_column: text(3)?,
                    on_delete: crate::model::OnDelete::from_sql(&text(4)?),
                })
            })
            .collect()
    }

    /// A table's columns that refuse null, its primary key aside.
    pub async fn not_null_columns(&mut self, table: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace \
             AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull \
             AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid \
             AND i.indisprimary AND a.attnum = ANY(i.indkey))",
        )
        .bind(table)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.iter().map(|r| r.try_get(0).map_err(err)).collect()
    }

    /// Does `table` (in the current schema) have a trigger named `name`?
    pub async fn has_trigger(&mut self, table: &str, name: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE t.tgname = $1 AND c.relname = $2 AND NOT t.tgisinternal \
             AND c.relnamespace = current_schema()::regnamespace",
        )
        .bind(name)
        .bind(table)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(integer(&row, 0).unwrap_or(0) > 0)
    }

    /// A table's index names in the current schema.
    pub async fn indexes(&mut self, table: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT indexname::text FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = $1",
        )
        .bind(table)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        rows.iter().map(|r| r.try_get(0).map_err(err)).collect()
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(err)?;
        self.changes.committed();
        Ok(())
    }
}

/// The table of restkit's own `INSERT INTO "t" …`.
fn inserted_table(sql: &str) -> Option<String> {
    let rest = sql.strip_prefix("INSERT INTO \"")?;
    rest.split_once('"').map(|(t, _)| t.to_string())
}

/// SQLSTATEs that mean the database cannot serve now but may soon: the
/// connection failed (class 08), the server is shutting down or starting
/// (57P01–57P03), out of resources (class 53), or a lock could not be had
/// (55P03), a serialization failure or deadlock (40001, 40P01).
pub fn unavailable(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "55P03" | "40001" | "40P01"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_inserts_name_their_table() {
        assert_eq!(
            inserted_table("INSERT INTO \"books\" (\"id\") VALUES ($1)").as_deref(),
            Some("books")
        );
        assert_eq!(inserted_table("SELECT 1"), None);
        assert!(unavailable("08006") && unavailable("57P01") && !unavailable("23505"));
    }
}
