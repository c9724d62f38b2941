//! Typed reads and writes over the declared tables (§13).
//!
//! The store takes typed requests ([`ListQuery`], [`Scope`], field indexes,
//! JSON values already validated against the model) and returns
//! [`Record`]s keyed by API field names. It builds every statement with
//! sea-query and binds every value ([`sql`]); identifiers come only from the
//! model. It never sees HTTP: no headers, no status codes, no query strings.
//!
//! Backends: SQLite ([`sqlite`]) and PostgreSQL ([`postgres`]). Each
//! public method matches on [`Backend`]; what differs in SQL text is
//! asked of the [`Dialect`]. Nothing above this module knows which
//! database runs.

pub mod changes;
pub mod dialect;
pub mod migrate;
pub mod own;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use serde_json::{Map, Value};

pub use dialect::Dialect;

use crate::model::{FieldType, Resource};

/// A record as served: API field name → value, in declaration order.
pub type Record = Map<String, Value>;

/// Equality conditions every statement carries: the parent key from the
/// path, the owner column from the identity (§4.2, §8.6).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// (field index, value)
    pub equal: Vec<(usize, Value)>,
    /// Parent conditions: the row's parent must itself be in scope (an
    /// expanded review of a private shelf is the caller's only if the
    /// shelf is).
    pub within: Vec<Within>,
}

/// The rows whose `field` holds the key of a `parent` row within `scope`.
#[derive(Debug, Clone)]
pub struct Within {
    pub field: usize,
    pub parent: std::sync::Arc<Resource>,
    pub scope: Scope,
}

impl Scope {
    /// No condition at all.
    pub fn is_empty(&self) -> bool {
        self.equal.is_empty() && self.within.is_empty()
    }

    /// The scope narrowed by `field = value` (a condition already there
    /// is not repeated).
    pub fn and(mut self, field: usize, value: Value) -> Scope {
        if !self.equal.iter().any(|(f, v)| *f == field && *v == value) {
            self.equal.push((field, value));
        }
        self
    }
}

pub use crate::query::SortKey;
pub use sql::{Selection, Since, TombstoneScope};

/// What to read from a collection.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub fields: &'a [usize],
    pub selection: Selection<'a>,
    /// Sort keys as asked; the primary key is appended as tie-break.
    pub sort: Vec<SortKey>,
    /// Keyset position: values of the full order's keys of the last row seen.
    pub after: Option<&'a [Value]>,
    pub limit: u64,
    pub offset: u64,
}

/// How a total was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact(u64),
    Estimated(u64),
}

impl Count {
    pub fn value(self) -> u64 {
        match self {
            Count::Exact(n) | Count::Estimated(n) => n,
        }
    }
}

/// Tombstones of one sync read: ids, and where the list was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub ids: Vec<i64>,
    /// Set when there were more than the cap: the latest deletion time
    /// reported, which the next sync must start from.
    pub cut: Option<String>,
}

/// The change time before any change: `1970-01-01T00:00:00.000000Z`.
pub const EPOCH: &str = "1970-01-01T00:00:00.000000Z";

/// Up to this many matching rows, "estimated" counts exactly (it is cheap);
/// past it, a cheaper estimate stands in.
pub const ESTIMATE_EXACT_UP_TO: u64 = 10_000;

/// Why a store call failed. Converted into [`crate::error::ApiError`] in
/// exactly one place (`impl From<StoreError> for ApiError`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (pool timeout, I/O): 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint rejected the write: 409. Holds the API field
    /// name when the column could be identified.
    #[error("unique constraint violated on {field:?}")]
    Unique { field: Option<String> },
    /// A statement ran past `database.statement_timeout` and was cancelled.
    #[error("statement cancelled after the time limit")]
    Timeout,
    /// A referenced row does not exist.
    #[error("foreign key constraint failed")]
    ForeignKey,
    /// A column that refuses null got none (a write around the API's
    /// checks, or a declaration another one over the table contradicts):
    /// 422, naming the field when it is known.
    #[error("a value is missing in {field:?}")]
    Missing { field: Option<String> },
    /// A value the database cannot store or index (PostgreSQL: longer
    /// than a B-tree index entry may be): 422.
    #[error("value too long: {0}")]
    TooLong(String),
    /// The stored schema contradicts the declaration (a migration
    /// refuses to reinterpret data); names the resource and field.
    #[error("{0}")]
    Schema(String),
    /// Anything else: 500, logged.
    #[error("database error: {0}")]
    Other(String),
}

impl StoreError {
    fn from_sqlx(d: Dialect, e: sqlx::Error, r: Option<&Resource>) -> StoreError {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Unique {
                field: r.and_then(|r| d.unique_field(r, db.message(), db.constraint())),
            },
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::ForeignKey,
            // not_null_violation
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23502") => {
                let column = db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.column().map(str::to_string));
                StoreError::Missing {
                    field: r.zip(column).and_then(|(r, c)| {
                        r.fields
                            .iter()
                            .find(|f| f.column == c)
                            .map(|f| f.name.clone())
                    }),
                }
            }
            // query_canceled: statement_timeout ran out.
            sqlx::Error::Database(db)
                if d == Dialect::Postgres && db.code().as_deref() == Some("57014") =>
            {
                StoreError::Timeout
            }
            // program_limit_exceeded: a value too long for a B-tree index
            // (about 2,700 bytes) on a unique or indexed column.
            sqlx::Error::Database(db)
                if d == Dialect::Postgres && db.code().as_deref() == Some("54000") =>
            {
                StoreError::TooLong(db.message().to_string())
            }
            sqlx::Error::Database(db)
                if d == Dialect::Postgres
                    && db.code().as_deref().is_some_and(postgres::unavailable) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// A single-column foreign key a table has, as the database lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingForeignKey {
    /// The constraint's name (PostgreSQL; SQLite's keys have none).
    pub name: Option<String>,
    pub column: String,
    pub target_table: String,
    /// Empty: the target's primary key.
    pub target_column: String,
    /// `None`: an action restkit does not declare (`NO ACTION`).
    pub on_delete: Option<crate::model::OnDelete>,
}

impl ExistingForeignKey {
    /// Does this key already do what `spec` asks?
    pub fn satisfies(&self, spec: &crate::model::plan::ForeignKeySpec) -> bool {
        self.column.eq_ignore_ascii_case(&spec.column)
            && self.target_table.eq_ignore_ascii_case(&spec.target_table)
            && (self.target_column.is_empty()
                || self.target_column.eq_ignore_ascii_case(&spec.target_column))
            && self.on_delete == Some(spec.on_delete)
    }
}

/// An open write transaction: one request's reads and writes, committed
/// together or not at all. Dropping it without [`WriteTx::commit`] rolls
/// back.
///
/// PATCH reads, merges, validates and writes in one of these, so two
/// concurrent patches of one record cannot lose each other's fields; an
/// `If-Match` check or a token rotation composes the same way.
pub enum WriteTx {
    Sqlite(sqlite::SqliteWrite),
    Postgres(postgres::PgWrite),
}

impl WriteTx {
    fn dialect(&self) -> Dialect {
        match self {
            WriteTx::Sqlite(_) => Dialect::Sqlite,
            WriteTx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// This transaction's change time (stored form): strictly later than
    /// every change committed before it, by any instance.
    pub fn now(&self) -> &str {
        match self {
            WriteTx::Sqlite(t) => &t.now,
            WriteTx::Postgres(t) => &t.now,
        }
    }

    /// Reads row `id` within `scope`, seeing this transaction's writes.
    pub async fn fetch(
        &mut self,
        r: &Resource,
        fields: &[usize],
        id: i64,
        scope: &Scope,
    ) -> Result<Option<Record>, StoreError> {
        let stmt = sql::select_one(r, fields, id, scope);
        match self {
            WriteTx::Sqlite(t) => t.fetch_optional(r, fields, stmt).await,
            WriteTx::Postgres(t) => t.fetch_optional(r, fields, stmt).await,
        }
    }

    /// Rows of `q`, seeing this transaction's writes: what a write decides
    /// from is read under the same lock it writes under.
    pub async fn list(
        &mut self,
        r: &Resource,
        q: &ListQuery<'_>,
    ) -> Result<Vec<Record>, StoreError> {
        let stmt = sql::select_list(self.dialect(), r, q);
        match self {
            WriteTx::Sqlite(t) => t.fetch_all(r, q.fields, stmt).await,
            WriteTx::Postgres(t) => t.fetch_all(r, q.fields, stmt).await,
        }
    }

    /// Inserts `values` (field index → JSON value) and returns the stored
    /// record's `fields`.
    pub async fn insert(
        &mut self,
        r: &Resource,
        values: &[(usize, Value)],
        fields: &[usize],
    ) -> Result<Record, StoreError> {
        let stmt = sql::insert(r, values, fields, self.now());
        self.returning(r, fields, sql::Write::Insert(stmt))
            .await?
            .ok_or_else(|| StoreError::Other("insert returned no row".into()))
    }

    /// Updates row `id` within `scope`; `None` when there is no such row.
    pub async fn update(
        &mut self,
        r: &Resource,
        id: i64,
        scope: &Scope,
        values: &[(usize, Value)],
        fields: &[usize],
    ) -> Result<Option<Record>, StoreError> {
        let stmt = sql::update(r, id, scope, values, fields, self.now());
        self.returning(r, fields, sql::Write::Update(stmt)).await
    }

    /// Sets `values` on every row within `scope`; returns how many.
    pub async fn update_where(
        &mut self,
        r: &Resource,
        scope: &Scope,
        values: &[(usize, Value)],
    ) -> Result<u64, StoreError> {
        let stmt = sql::update_where(r, scope, values, self.now());
        match self {
            WriteTx::Sqlite(t) => t.execute(r, stmt).await,
            WriteTx::Postgres(t) => t.execute(r, stmt).await,
        }
    }

    async fn returning(
        &mut self,
        r: &Resource,
        fields: &[usize],
        stmt: sql::Write,
    ) -> Result<Option<Record>, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.returning(r, fields, stmt).await,
            WriteTx::Postgres(t) => t.returning(r, fields, stmt).await,
        }
    }

    /// Deletes row `id` within `scope`; `false` when there is no such row.
    /// Tombstones of sync tables (cascades included) are written by the
    /// database itself (see `migrate`).
    pub async fn delete(
        &mut self,
        r: &Resource,
        id: i64,
        scope: &Scope,
    ) -> Result<bool, StoreError> {
        let n = self.execute(r, sql::delete(r, id, scope)).await?;
        Ok(n > 0)
    }

    /// Deletes every row of the selection; returns how many.
    pub async fn delete_where(
        &mut self,
        r: &Resource,
        s: &Selection<'_>,
    ) -> Result<u64, StoreError> {
        self.execute(r, sql::delete_where(self.dialect(), r, s))
            .await
    }

    /// Runs a delete of restkit's own rows (no declared resource).
    async fn execute_delete(
        &mut self,
        stmt: sea_query::DeleteStatement,
    ) -> Result<u64, StoreError> {
        self.execute(own::tombstones(), stmt).await
    }

    async fn execute(
        &mut self,
        r: &Resource,
        stmt: sea_query::DeleteStatement,
    ) -> Result<u64, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.execute(r, stmt).await,
            WriteTx::Postgres(t) => t.execute(r, stmt).await,
        }
    }

    /// Does the selection cover every row within its scope, and are
    /// there at least two? (A bulk delete then needs `all=true`.) Two
    /// bounded probes, as this transaction sees the table.
    pub async fn covers_all_of_several(
        &mut self,
        r: &Resource,
        s: &Selection<'_>,
    ) -> Result<bool, StoreError> {
        let everything = Selection {
            scope: s.scope,
            filter: None,
            since: None,
        };
        let several = sql::select_count_capped(self.dialect(), r, &everything, 2);
        if self.scalar(several).await?.unwrap_or(0) < 2 {
            return Ok(false);
        }
        let spared = sql::select_spared(self.dialect(), r, s);
        Ok(self.scalar(spared).await?.is_none())
    }

    async fn scalar(
        &mut self,
        stmt: sea_query::SelectStatement,
    ) -> Result<Option<i64>, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.fetch_scalar(stmt).await,
            WriteTx::Postgres(t) => t.fetch_scalar(stmt).await,
        }
    }

    /// How many rows below the selection's rows, at the end of `path`,
    /// belong to someone other than `user` (see
    /// [`sql::select_owned_below`]), as this transaction sees them.
    pub async fn count_owned_below(
        &mut self,
        r: &Resource,
        s: &Selection<'_>,
        path: &crate::model::plan::OwnedPath,
        user: Option<i64>,
    ) -> Result<u64, StoreError> {
        let stmt = sql::select_owned_below(self.dialect(), r, s, path, user);
        Ok(self.scalar(stmt).await?.unwrap_or(0).max(0) as u64)
    }

    /// How many rows hold, in `reference`'s key, one of the selection's
    /// rows of `r`, as this transaction sees them.
    pub async fn count_referring(
        &mut self,
        r: &Resource,
        s: &Selection<'_>,
        reference: &crate::model::plan::Reference,
    ) -> Result<u64, StoreError> {
        let stmt =
            sql::select_referring(self.dialect(), r, s, &reference.resource, reference.field);
        Ok(self.scalar(stmt).await?.unwrap_or(0).max(0) as u64)
    }

    /// Sets `reference`'s key to null on the rows naming one of the
    /// selection's rows of `r` (see [`sql::detach_referring`]); returns how
    /// many.
    pub async fn detach_referring(
        &mut self,
        r: &Resource,
        s: &Selection<'_>,
        reference: &crate::model::plan::Reference,
    ) -> Result<u64, StoreError> {
        let child = &reference.resource;
        let stmt = sql::detach_referring(self.dialect(), r, s, child, reference.field, self.now());
        match self {
            WriteTx::Sqlite(t) => t.execute(child, stmt).await,
            WriteTx::Postgres(t) => t.execute(child, stmt).await,
        }
    }

    /// Runs a restkit-owned insert (seeding, own tables).
    pub async fn execute_insert(
        &mut self,
        stmt: sea_query::InsertStatement,
    ) -> Result<(), StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.insert(stmt).await,
            WriteTx::Postgres(t) => t.insert(stmt).await,
        }
    }

    /// Runs one of restkit's own schema statements (a migration step).
    pub(crate) async fn execute_ddl(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.execute_ddl(sql).await,
            WriteTx::Postgres(t) => t.execute_ddl(sql).await,
        }
    }

    /// A table's columns (name, declared type) as this transaction sees
    /// them; empty when it does not exist.
    pub(crate) async fn columns(
        &mut self,
        table: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.columns(table).await,
            WriteTx::Postgres(t) => t.columns(table).await,
        }
    }

    /// Does `table` have a trigger named `name`?
    pub(crate) async fn has_trigger(
        &mut self,
        table: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.has_trigger(table, name).await,
            WriteTx::Postgres(t) => t.has_trigger(table, name).await,
        }
    }

    /// A table's index names as this transaction sees them.
    pub(crate) async fn indexes(&mut self, table: &str) -> Result<Vec<String>, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.indexes(table).await,
            WriteTx::Postgres(t) => t.indexes(table).await,
        }
    }

    /// A table's single-column foreign keys as this transaction sees them.
    pub(crate) async fn foreign_keys(
        &mut self,
        table: &str,
    ) -> Result<Vec<ExistingForeignKey>, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.foreign_keys(table).await,
            WriteTx::Postgres(t) => t.foreign_keys(table).await,
        }
    }

    /// SQLite: rebuilds `table` with `keys` and the columns' null rule
    /// in `not_null` (see [`sqlite::SqliteWrite::rebuild`]).
    pub(crate) async fn rebuild(
        &mut self,
        table: &str,
        keys: &[crate::model::plan::ForeignKeySpec],
        not_null: &[(String, bool)],
    ) -> Result<(), StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.rebuild(table, keys, not_null).await,
            WriteTx::Postgres(_) => Err(StoreError::Other(
                "PostgreSQL changes constraints in place".into(),
            )),
        }
    }

    /// Takes a change time for a transaction begun without one (a
    /// migration that changes rows), unless it has one.
    pub(crate) async fn take_change_time(&mut self) -> Result<(), StoreError> {
        if !self.now().is_empty() {
            return Ok(());
        }
        match self {
            WriteTx::Sqlite(t) => t.take_change_time().await,
            WriteTx::Postgres(t) => t.take_change_time().await,
        }
    }

    /// A table's columns that refuse null, its primary key aside.
    pub(crate) async fn not_null_columns(
        &mut self,
        table: &str,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.not_null_columns(table).await,
            WriteTx::Postgres(t) => t.not_null_columns(table).await,
        }
    }

    /// Runs a statement restkit built from the model (a migration's
    /// backfill); returns the rows it changed.
    pub(crate) async fn execute_update(
        &mut self,
        r: &Resource,
        stmt: sea_query::UpdateStatement,
    ) -> Result<u64, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.execute(r, stmt).await,
            WriteTx::Postgres(t) => t.execute(r, stmt).await,
        }
    }

    /// SQLite: rows breaking a foreign key, by table.
    pub(crate) async fn foreign_key_violations(
        &mut self,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.foreign_key_violations().await,
            WriteTx::Postgres(_) => Ok(Vec::new()),
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            WriteTx::Sqlite(t) => t.commit().await,
            WriteTx::Postgres(t) => t.commit().await,
        }
    }
}

/// How much of the database one instance may use, and for how long.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections in the pool (SQLite: readers; the writer is one).
    pub max_connections: u32,
    /// A statement running longer is cancelled (zero: no limit).
    pub statement_timeout: std::time::Duration,
    /// How long to wait for a connection (PostgreSQL: to connect, or for
    /// a free one in the pool) before answering 503.
    pub connect_timeout: std::time::Duration,
    /// How long tombstones are kept (`None`: forever); see
    /// [`Store::prune_deletions`].
    pub keep_deletions: Option<std::time::Duration>,
}

impl From<&crate::config::DatabaseSettings> for Limits {
    fn from(d: &crate::config::DatabaseSettings) -> Self {
        Limits {
            max_connections: d.max_connections,
            statement_timeout: d.statement_timeout,
            connect_timeout: d.connect_timeout,
            keep_deletions: d.keep_deletions,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 8,
            statement_timeout: std::time::Duration::ZERO,
            connect_timeout: std::time::Duration::from_secs(5),
            keep_deletions: Some(crate::config::DEFAULT_KEEP_DELETIONS),
        }
    }
}

/// The connected database.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    keep_deletions: Option<std::time::Duration>,
    /// Where pruning of tombstones had reached, as far as this process
    /// knows (`None` until first read): it only ever grows, so what is
    /// known is a lower bound of what is.
    pruned: std::sync::Arc<std::sync::Mutex<Option<Option<String>>>>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Connects to `url` (`sqlite://file.db`, `sqlite:///abs.db`,
    /// `sqlite::memory:`, creating an SQLite file if missing; or
    /// `postgres://user:pass@host:port/db?sslmode=…`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Store::connect_with_timeout(url, max_connections, std::time::Duration::ZERO).await
    }

    /// As [`Store::connect`], cancelling statements that run longer than
    /// `statement_timeout` (zero: no limit).
    pub async fn connect_with_timeout(
        url: &str,
        max_connections: u32,
        statement_timeout: std::time::Duration,
    ) -> Result<Store, StoreError> {
        let limits = Limits {
            max_connections,
            statement_timeout,
            ..Limits::default()
        };
        Store::open(url, &limits).await
    }

    /// Connects to `url` under `limits`.
    pub async fn open(url: &str, limits: &Limits) -> Result<Store, StoreError> {
        if !crate::config::SUPPORTED_SCHEMES
            .iter()
            .any(|s| url.starts_with(s))
        {
            return Err(StoreError::Other(format!(
                "unsupported database URL scheme in '{}': {}",
                url.split(':').next().unwrap_or(""),
                crate::config::SUPPORTED_TEXT
            )));
        }
        if url.starts_with("sqlite:") {
            let s =
                sqlite::SqliteStore::connect(url, limits.max_connections, limits.statement_timeout)
                    .await?;
            return Ok(Store {
                backend: Backend::Sqlite(s),
                keep_deletions: limits.keep_deletions,
                pruned: std::sync::Arc::default(),
            });
        }
        let s = postgres::PgStore::connect(
            url,
            limits.max_connections,
            limits.statement_timeout,
            limits.connect_timeout,
        )
        .await?;
        Ok(Store {
            backend: Backend::Postgres(s),
            keep_deletions: limits.keep_deletions,
            pruned: std::sync::Arc::default(),
        })
    }

    /// The SQL dialect of the connected database.
    pub fn dialect(&self) -> Dialect {
        match &self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// `SELECT 1`: is the database reachable?
    /// Per pool (`read`, `write`): connections in use and idle (§12).
    pub fn pool_state(&self) -> Vec<(&'static str, u32, u32)> {
        match &self.backend {
            Backend::Sqlite(s) => s.pool_state().to_vec(),
            Backend::Postgres(s) => s.pool_state().to_vec(),
        }
    }

    /// A signal that moves when the database may have changed: at once
    /// for this process's commits, and — while anyone listens — within
    /// `poll` for anyone else's (the horizon is read that often).
    pub fn listen_changes(&self, poll: std::time::Duration) -> tokio::sync::watch::Receiver<u64> {
        let changes = match &self.backend {
            Backend::Sqlite(s) => s.changes(),
            Backend::Postgres(s) => s.changes(),
        };
        let rx = changes.listen();
        let store = self.clone();
        changes.watch_horizon(poll, move || {
            let store = store.clone();
            async move { store.horizon().await.ok() }
        });
        rx
    }

    /// SQLite: the writer's commits so far, and the write requests they
    /// carried (group commit); `None` where each write commits alone.
    pub fn write_groups(&self) -> Option<(u64, u64)> {
        match &self.backend {
            Backend::Sqlite(s) => Some(s.commit_groups()),
            Backend::Postgres(_) => None,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.ping().await,
            Backend::Postgres(s) => s.ping().await,
        }
    }

    pub async fn list(&self, r: &Resource, q: &ListQuery<'_>) -> Result<Vec<Record>, StoreError> {
        let stmt = sql::select_list(self.dialect(), r, q);
        match &self.backend {
            Backend::Sqlite(s) => s.fetch_all(r, q.fields, stmt).await,
            Backend::Postgres(s) => s.fetch_all(r, q.fields, stmt).await,
        }
    }

    /// A page of a sync resource and its sync mark, from one snapshot:
    /// every change the page does not show has a later time than the mark,
    /// which is the latest change among the rows in the page's scope and
    /// the tombstones in `tombstones` (see [`sql::select_list_with_mark`]).
    pub async fn list_with_mark(
        &self,
        r: &Resource,
        q: &ListQuery<'_>,
        tombstones: TombstoneScope,
    ) -> Result<(String, Vec<Record>), StoreError> {
        let Some(updated_at) = r.fields.iter().position(|f| f.updated_at) else {
            return Err(StoreError::Other(format!(
                "{} is synced but keeps no change time",
                r.name
            )));
        };
        let horizon = self.read_bound().await?;
        let floor = self.mark_floor().await?;
        let stmt = sql::select_list_with_mark(
            self.dialect(),
            r,
            q,
            updated_at,
            tombstones,
            horizon.as_deref(),
            floor.as_deref(),
        );
        match &self.backend {
            Backend::Sqlite(s) => s.fetch_all_with_mark(r, q.fields, stmt).await,
            Backend::Postgres(s) => s.fetch_all_with_mark(r, q.fields, stmt).await,
        }
    }

    /// Exact count of the selection.
    pub async fn count(&self, r: &Resource, s: &Selection<'_>) -> Result<u64, StoreError> {
        self.scalar(sql::select_count(self.dialect(), r, s))
            .await
            .map(|n| n.unwrap_or(0).max(0) as u64)
    }

    /// A cheap count: exact up to [`ESTIMATE_EXACT_UP_TO`] rows; past that,
    /// for an unfiltered table, the primary-key range scaled by how densely
    /// keys fill it at both ends (deleted rows leave gaps: the bare range
    /// said 30,000 for 15,000 rows), else the bound itself, reported as an
    /// estimate. Every statement is an index lookup or a range scan of at
    /// most [`ESTIMATE_EXACT_UP_TO`] keys.
    pub async fn estimate(&self, r: &Resource, s: &Selection<'_>) -> Result<Count, StoreError> {
        let capped = self
            .scalar(sql::select_count_capped(
                self.dialect(),
                r,
                s,
                ESTIMATE_EXACT_UP_TO + 1,
            ))
            .await?
            .unwrap_or(0)
            .max(0) as u64;
        if capped <= ESTIMATE_EXACT_UP_TO {
            return Ok(Count::Exact(capped));
        }
        if s.scope.equal.is_empty()
            && s.scope.within.is_empty()
            && s.filter.is_none()
            && s.since.is_none()
        {
            let max = self.scalar(sql::select_key_bound(r, true)).await?;
            let min = self.scalar(sql::select_key_bound(r, false)).await?;
            if let (Some(max), Some(min)) = (max, min) {
                return Ok(Count::Estimated(
                    self.estimate_from_keys(r, min, max, capped).await?,
                ));
            }
        }
        Ok(Count::Estimated(capped))
    }

    /// Rows of a table holding more than [`ESTIMATE_EXACT_UP_TO`] rows,
    /// with keys `min..=max`: the range times the share of keys present in
    /// a window of [`ESTIMATE_EXACT_UP_TO`] keys at each end, kept between
    /// `at_least` (rows known to exist) and the range (keys are unique).
    async fn estimate_from_keys(
        &self,
        r: &Resource,
        min: i64,
        max: i64,
        at_least: u64,
    ) -> Result<u64, StoreError> {
        let window = ESTIMATE_EXACT_UP_TO as i64;
        let range = (max as i128 - min as i128 + 1).clamp(1, u64::MAX as i128) as u64;
        let low = self
            .scalar(sql::select_keys_between_capped(
                r,
                min,
                min.saturating_add(window - 1),
                ESTIMATE_EXACT_UP_TO,
            ))
            .await?
            .unwrap_or(0)
            .max(0);
        let high = self
            .scalar(sql::select_keys_between_capped(
                r,
                max.saturating_sub(window - 1),
                max,
                ESTIMATE_EXACT_UP_TO,
            ))
            .await?
            .unwrap_or(0)
            .max(0);
        let density = (low + high) as f64 / (2 * window) as f64;
        let estimate = (range as f64 * density).round() as u64;
        Ok(estimate.clamp(at_least, range.max(at_least)))
    }

    async fn scalar(&self, stmt: sea_query::SelectStatement) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.fetch_scalar(stmt).await,
            Backend::Postgres(s) => s.fetch_scalar(stmt).await,
        }
    }

    /// Ids of `r` deleted after `since`, oldest first. At most about
    /// `cap`: past it, the list ends with the whole group of deletions
    /// sharing the last reported time, and that time is returned as the
    /// cut — the client must continue from it (nothing after it is
    /// reported, nothing before it is left out).
    pub async fn deleted_since(
        &self,
        r: &Resource,
        since: &str,
        cap: u64,
        scope: TombstoneScope,
    ) -> Result<Deleted, StoreError> {
        // Nothing past the bound, where a deletion still in flight may
        // have an earlier time than one reported (and the cut handed out
        // would pass it).
        let horizon = self.read_bound().await?;
        let rows = self
            .pairs(sql::select_tombstones(
                r,
                (since, None),
                horizon.as_deref().map(|h| (h, None)),
                cap + 1,
                scope,
            ))
            .await?;
        if rows.len() as u64 <= cap {
            return Ok(Deleted {
                ids: rows.into_iter().map(|(id, _)| id).collect(),
                cut: None,
            });
        }
        let cut = rows[cap as usize - 1].1.clone();
        let rows = self
            .pairs(sql::select_tombstones(
                r,
                (since, None),
                Some((&cut, None)),
                u64::MAX,
                scope,
            ))
            .await?;
        Ok(Deleted {
            ids: rows.into_iter().map(|(id, _)| id).collect(),
            cut: Some(cut),
        })
    }

    /// Where tombstones were pruned up to (stored time form): deletions
    /// at or before it may be gone. `None` while none was ever pruned.
    pub async fn deletions_pruned_upto(&self) -> Result<Option<String>, StoreError> {
        let kept = own::deletions_kept();
        let rows = own::rows_where(self, kept, "id", Value::from(1), 1).await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("keptFrom"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// What this process knows of where pruning reached: read once, then
    /// raised by every later read (see [`Store::forgotten_after`]).
    async fn known_pruned(&self) -> Result<Option<String>, StoreError> {
        let known = self
            .pruned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match known {
            Some(known) => Ok(known),
            None => {
                let read = self.deletions_pruned_upto().await?;
                Ok(self.learn_pruned(read))
            }
        }
    }

    /// Raises what is known of the pruning mark to `read`; the result.
    fn learn_pruned(&self, read: Option<String>) -> Option<String> {
        let mut known = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
        let best = known.clone().flatten().max(read);
        *known = Some(best.clone());
        best
    }

    /// The least sync mark a read hands out: half the retention ago
    /// (rounded down, so marks stay put between reads), and never before
    /// the pruning mark. A caller whose last visible change is older would
    /// otherwise be given a position it is then refused (410) for, read
    /// again, and be given the same one; positions at or past the floor
    /// stay good for at least half the retention.
    async fn mark_floor(&self) -> Result<Option<String>, StoreError> {
        let known = self.known_pruned().await?;
        let by_age = self.keep_deletions.and_then(|keep| {
            let step = (keep / 4)
                .min(std::time::Duration::from_secs(3600))
                .as_micros()
                .max(1) as i64;
            let micros = ago(chrono::Utc::now(), keep / 2)?.timestamp_micros();
            let rounded = micros - micros.rem_euclid(step);
            chrono::DateTime::from_timestamp_micros(rounded).map(format_datetime)
        });
        Ok(by_age.max(known))
    }

    /// Can changes after position (`time`, `key`) (stored form) no longer
    /// be told in full, deletions after it having been pruned? `Some(where
    /// the pruning reached)` then.
    ///
    /// Ask after reading the tombstones: the pruning moves that mark in
    /// the transaction that deletes them, so a read that finds it before
    /// `time` afterwards read every tombstone after `time` before.
    pub async fn forgotten_after(
        &self,
        time: &str,
        key: Option<i64>,
    ) -> Result<Option<String>, StoreError> {
        // Pruned: every deletion at or before the mark. A position at that
        // time without a key comes after all of them.
        let before = |upto: &str| time < upto || (time == upto && key.is_some());
        // What is known is certain (the mark only grows), whatever the
        // setting was when it was pruned.
        if let Some(known) = self.known_pruned().await?.filter(|k| before(k)) {
            return Ok(Some(known));
        }
        // Kept forever: nothing is pruned now.
        let Some(keep) = self.keep_deletions else {
            return Ok(None);
        };
        // Nothing from less than `keep` ago is ever pruned (an hour
        // allowed for instances' clocks to differ): no need to ask.
        let surely_kept = ago(chrono::Utc::now(), keep)
            .and_then(|t| t.checked_add_signed(chrono::Duration::hours(1)));
        match surely_kept {
            Some(t) if time >= format_datetime(t).as_str() => return Ok(None),
            None => return Ok(None),
            Some(_) => {}
        }
        let pruned = self.deletions_pruned_upto().await?;
        Ok(self.learn_pruned(pruned).filter(|upto| before(upto)))
    }

    /// Prunes the tombstones of `tables` (sync tables) of deletions more
    /// than `database.keep_deletions` before `now`, about `batch` per
    /// transaction, each of which first moves the mark of where pruning
    /// reached (see [`Store::forgotten_after`]). Returns how many went.
    pub async fn prune_deletions(
        &self,
        tables: &[String],
        now: chrono::DateTime<chrono::Utc>,
        batch: u64,
    ) -> Result<u64, StoreError> {
        let Some(before) = self.keep_deletions.and_then(|keep| ago(now, keep)) else {
            return Ok(0);
        };
        let before = format_datetime(before);
        let batch = batch.max(1);
        let kept = own::deletions_kept();
        let mut pruned = 0;
        for table in tables {
            loop {
                // Up to the batch's newest deletion time, ties included.
                let mut upto = self
                    .pairs(sql::old_tombstone(table, &before, batch - 1, false))
                    .await?;
                if upto.is_empty() {
                    upto = self
                        .pairs(sql::old_tombstone(table, &before, 0, true))
                        .await?;
                }
                let Some((_, upto)) = upto.pop() else {
                    break;
                };
                let mut tx = self.begin_write().await?;
                let none = Scope::default();
                let mark = Value::String(upto.clone());
                match tx.fetch(kept, &[1], 1, &none).await? {
                    None => {
                        tx.insert(kept, &[(0, Value::from(1)), (1, mark)], &[0])
                            .await?;
                    }
                    Some(row) if row.get("keptFrom").and_then(Value::as_str) < Some(&upto) => {
                        tx.update(kept, 1, &none, &[(1, mark)], &[0]).await?;
                    }
                    Some(_) => {}
                }
                let n = tx
                    .execute_delete(sql::delete_tombstones(table, &upto))
                    .await?;
                tx.commit().await?;
                self.learn_pruned(Some(upto));
                pruned += n;
                if n < batch {
                    break;
                }
                // Let the writes queued behind this batch go first.
                tokio::task::yield_now().await;
            }
        }
        Ok(pruned)
    }

    /// (id, deletion time) of the rows of `r` within `scope` deleted after
    /// position `after` and not after `upto` (a position the caller read
    /// up to, never past the horizon), in position order; at most `limit`.
    pub async fn deleted_between(
        &self,
        r: &Resource,
        after: sql::Position<'_>,
        upto: sql::Position<'_>,
        limit: u64,
        scope: TombstoneScope,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.pairs(sql::select_tombstones(r, after, Some(upto), limit, scope))
            .await
    }

    /// Has any row of `r` within `scope` changed, or been deleted within
    /// `tombstones`, after `mark`?
    pub async fn changed_since(
        &self,
        r: &Resource,
        mark: &str,
        scope: &Scope,
        tombstones: TombstoneScope,
    ) -> Result<bool, StoreError> {
        let Some(updated) = r.fields.iter().position(|f| f.updated_at) else {
            return Ok(true);
        };
        if self
            .scalar(sql::select_changed_after(r, updated, mark, scope))
            .await?
            .is_some()
        {
            return Ok(true);
        }
        Ok(!self
            .pairs(sql::select_tombstones(r, (mark, None), None, 1, tombstones))
            .await?
            .is_empty())
    }

    async fn pairs(
        &self,
        stmt: sea_query::SelectStatement,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.fetch_id_times(stmt).await,
            Backend::Postgres(s) => s.fetch_id_times(stmt).await,
        }
    }

    pub async fn fetch(
        &self,
        r: &Resource,
        fields: &[usize],
        id: i64,
        scope: &Scope,
    ) -> Result<Option<Record>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.fetch_one(r, fields, id, scope).await,
            Backend::Postgres(s) => {
                s.fetch_optional(r, fields, sql::select_one(r, fields, id, scope))
                    .await
            }
        }
    }

    /// Rows whose `key` is one of `values`, within `scope` (expansion); at
    /// most `per_key` for each key value when given, and at most `total`
    /// in all.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch_by_keys(
        &self,
        r: &Resource,
        fields: &[usize],
        key: usize,
        values: &[Value],
        scope: &Scope,
        per_key: Option<u64>,
        total: u64,
    ) -> Result<Vec<Record>, StoreError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let mut stmt = sql::select_by_keys(r, fields, key, values, scope, per_key);
        stmt.limit(total);
        match &self.backend {
            Backend::Sqlite(s) => s.fetch_all(r, fields, stmt).await,
            Backend::Postgres(s) => s.fetch_all(r, fields, stmt).await,
        }
    }

    /// Does a row with this id exist within `scope`?
    pub async fn exists(&self, r: &Resource, id: i64, scope: &Scope) -> Result<bool, StoreError> {
        Ok(self.fetch(r, &[r.primary_key], id, scope).await?.is_some())
    }

    /// The bound a sync read's rows, mark and tombstones must not pass,
    /// read before its snapshot: the [`Store::horizon`] where writers may
    /// commit out of the order of their times (PostgreSQL); `None` where
    /// they cannot (SQLite serializes them, and its mark query reads the
    /// clock row in the same snapshot).
    async fn read_bound(&self) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(s) => s.horizon().await.map(Some),
        }
    }

    /// The latest change time at or before which nothing can still
    /// commit: every change committed from now on has a later time. Read
    /// before a snapshot, everything at or before it is in the snapshot.
    pub async fn horizon(&self) -> Result<String, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.horizon().await,
            Backend::Postgres(s) => s.horizon().await,
        }
    }

    /// Starts a write transaction with its change time: strictly later
    /// than every change committed before it, by this process or any
    /// other sharing the database (§6.7). SQLite: writes are serialized
    /// and the time comes from the clock row, advanced inside the
    /// transaction, so change times order commits. PostgreSQL: writers run
    /// at once; the time comes from `restkit_stamp`, which registers the
    /// transaction as in flight until it ends, and sync reads never mark
    /// past the [`Store::horizon`].
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => Ok(WriteTx::Sqlite(s.begin_write().await?)),
            Backend::Postgres(s) => Ok(WriteTx::Postgres(s.begin_write().await?)),
        }
    }

    /// Inserts one row in a transaction of its own.
    pub async fn insert(
        &self,
        r: &Resource,
        values: &[(usize, Value)],
        fields: &[usize],
    ) -> Result<Record, StoreError> {
        let mut tx = self.begin_write().await?;
        let rec = tx.insert(r, values, fields).await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Deletes every row of the selection in one transaction; returns how
    /// many.
    pub async fn delete_where(&self, r: &Resource, s: &Selection<'_>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = tx.delete_where(r, s).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Creates or upgrades the declared tables (§13, §15), and says what
    /// it did.
    pub async fn migrate(
        &self,
        model: &crate::model::ApiModel,
    ) -> Result<migrate::Report, StoreError> {
        self.migrate_with(model, migrate::Options::default(), true)
            .await
    }

    /// Plans the migration to `model` and applies it (`apply`) or rolls
    /// it back (a dry run: the report says what it would do).
    pub async fn migrate_with(
        &self,
        model: &crate::model::ApiModel,
        options: migrate::Options,
        apply: bool,
    ) -> Result<migrate::Report, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                let tx = s.begin_ddl().await?;
                // Index builds may rightly run past the statement limit.
                let _unbounded = s.unbounded_writes();
                migrate::run(WriteTx::Sqlite(tx), model, options, apply).await
            }
            Backend::Postgres(s) => {
                migrate::run(
                    WriteTx::Postgres(s.begin_ddl().await?),
                    model,
                    options,
                    apply,
                )
                .await
            }
        }
    }

    /// Runs restkit-owned inserts (seeding, own tables) in one write
    /// transaction. Values are bound; the SQL is restkit's.
    pub async fn execute_batch(
        &self,
        statements: Vec<sea_query::InsertStatement>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for stmt in statements {
            tx.execute_insert(stmt).await?;
        }
        tx.commit().await
    }

    /// Is this table empty (or missing)? Used to decide seeding.
    pub async fn table_is_empty(&self, table: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.table_is_empty(table).await,
            Backend::Postgres(s) => s.table_is_empty(table).await,
        }
    }
}

pub use crate::model::value::format_datetime;

/// `now` less `d`, when that is a time (`None` past the calendar's start:
/// nothing is that old).
fn ago(
    now: chrono::DateTime<chrono::Utc>,
    d: std::time::Duration,
) -> Option<chrono::DateTime<chrono::Utc>> {
    now.checked_sub_signed(chrono::Duration::from_std(d).ok()?)
}

/// Converts a validated JSON value for `ty` into a bound SQL value.
///
/// Never lossy: `null` is the only value that becomes SQL NULL. A value
/// of another type than declared (validation should have refused it) is
/// bound as what it is, so a bug upstream can never erase data.
pub fn to_sql_value(ty: FieldType, v: &Value) -> sea_query::Value {
    use sea_query::Value as V;
    match (ty, v) {
        (_, Value::Null) => match ty {
            FieldType::Integer | FieldType::Decimal { .. } => V::BigInt(None),
            FieldType::Number => V::Double(None),
            FieldType::Boolean => V::Bool(None),
            FieldType::String
            | FieldType::DateTime
            | FieldType::Date
            | FieldType::Time
            | FieldType::Uuid
            | FieldType::Json => V::String(None),
        },
        (FieldType::Decimal { precision, scale }, Value::String(_) | Value::Number(_)) => {
            match crate::model::value::decimal_units(v, precision, scale) {
                Ok(units) => V::BigInt(Some(units)),
                Err(_) => as_is(v),
            }
        }
        (FieldType::Date, Value::String(s)) => V::String(Some(
            crate::model::value::parse_date(s).unwrap_or_else(|| s.clone()),
        )),
        (FieldType::Time, Value::String(s)) => V::String(Some(
            crate::model::value::parse_time(s).unwrap_or_else(|| s.clone()),
        )),
        (FieldType::Uuid, Value::String(s)) => V::String(Some(
            crate::model::value::parse_uuid(s).unwrap_or_else(|| s.clone()),
        )),
        (FieldType::Integer, Value::Number(n)) => match crate::model::integral(n) {
            Some(i) => V::BigInt(Some(i)),
            // `1e16` is an integer written as a float: bound as the
            // integer it is (bound as a float, PostgreSQL stored its bit
            // pattern in the bigint column).
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => V::BigInt(Some(f as i64)),
                _ => as_is(v),
            },
        },
        (FieldType::Number, Value::Number(n)) => match n.as_f64() {
            Some(f) => V::Double(Some(f)),
            None => as_is(v),
        },
        (FieldType::Boolean, Value::Bool(b)) => V::Bool(Some(*b)),
        (FieldType::String, Value::String(s)) => V::String(Some(s.clone())),
        (FieldType::String, Value::Number(n)) => V::String(Some(n.to_string())),
        (FieldType::DateTime, Value::String(s)) => V::String(Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| format_datetime(t.to_utc()))
                .unwrap_or_else(|_| s.clone()),
        )),
        (FieldType::Json, v) => V::String(Some(v.to_string())),
        (_, v) => as_is(v),
    }
}

/// A JSON value bound as itself, whatever the column's declared type.
fn as_is(v: &Value) -> sea_query::Value {
    use sea_query::Value as V;
    match v {
        Value::Null => V::String(None),
        Value::Bool(b) => V::Bool(Some(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => V::BigInt(Some(i)),
            None => V::Double(n.as_f64()),
        },
        Value::String(s) => V::String(Some(s.clone())),
        other => V::String(Some(other.to_string())),
    }
}

impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        use crate::error::{ApiError, FieldError};
        match e {
            StoreError::Unavailable(cause) => ApiError::unavailable(cause),
            StoreError::Unique { field } => {
                let mut err = ApiError::new(
                    http::StatusCode::CONFLICT,
                    "DUPLICATE_VALUE",
                    match &field {
                        Some(f) => format!("Another record already has this {f}."),
                        None => "Another record already has this value.".to_string(),
                    },
                );
                if let Some(f) = field {
                    err.errors.push(FieldError {
                        message: format!("{f} must be unique."),
                        field: f,
                        code: "unique".into(),
                    });
                }
                err
            }
            StoreError::Timeout => ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "QUERY_TIMEOUT",
                "The query took too long and was cancelled; narrow the filter or use an indexed field.",
            ),
            StoreError::TooLong(cause) => {
                tracing::info!(%cause, "a value too long to store");
                ApiError::new(
                    http::StatusCode::UNPROCESSABLE_ENTITY,
                    "VALUE_TOO_LONG",
                    "A value is too long to be stored in an indexed or unique field; shorten it.",
                )
            }
            StoreError::Missing { field } => ApiError::validation(vec![match field {
                Some(f) => FieldError {
                    message: format!("{f} is required."),
                    field: f,
                    code: "required".into(),
                },
                None => FieldError {
                    field: String::new(),
                    code: "required".into(),
                    message: "A required value is missing.".into(),
                },
            }]),
            StoreError::ForeignKey => ApiError::new(
                http::StatusCode::CONFLICT,
                "REFERENCE_CONFLICT",
                "The record refers to, or is referred to by, another record.",
            ),
            StoreError::Other(cause) | StoreError::Schema(cause) => ApiError::internal(cause),
        }
    }
}
