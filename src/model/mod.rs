//! The declared API: modules → resources → fields, relations and actions.
//!
//! This is the single source of truth. The router, the SQL store, the
//! validation schemas, the renderers' field lists and `restkit routes` all
//! read it; nothing else lists fields or routes. A model is built either from
//! TOML ([`toml`]) or in Rust ([`builder`]) and is checked once, by
//! [`ApiModel::validate`], before anything serves it.
//!
//! The model never sees HTTP requests or SQL connections.

pub mod builder;
pub mod plan;
pub mod schema;
pub mod toml;
pub mod value;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use value::{integral, parse_integral};

/// A whole API: every module it serves.
#[derive(Clone, Default, Debug, PartialEq, Serialize)]
pub struct ApiModel {
    pub modules: Vec<Module>,
    /// Name of a built-in seed to run on an empty database (`"library"`).
    pub seed: Option<String>,
}

/// A versioned prefix (`/v1`) holding resources and free-standing actions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Module {
    pub prefix: String,
    /// Accepted minor versions, e.g. `["1.0", "1.1"]` (§4.5).
    pub versions: Vec<String>,
    /// `author_name` is served as `authorName` (§5.1).
    pub convert_snake_case: bool,
    pub resources: Vec<Arc<Resource>>,
    /// Actions mapped to a path of their own (`POST /health/echo`).
    pub actions: Vec<Action>,
    /// CORS for this module's routes (§10); what it leaves out comes from
    /// the global `[cors]` settings.
    pub cors: ModuleCors,
    /// The credential kinds its routes accept (§8.4); `None`: Bearer,
    /// Basic, and `?access-token=` as `auth.query_param_token` says.
    pub credentials: Option<Credentials>,
    /// What the module is, for the generated documentation (§11).
    pub description: String,
}

/// Credential kinds a module accepts (§8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// `Authorization: Bearer <access token>`.
    pub bearer: bool,
    /// `?access-token=<access token>`.
    pub query: bool,
    /// `Authorization: Basic` with a user's username and password.
    pub basic: bool,
    /// `X-API-Key`, from `POST {auth.prefix}/authenticate`, bound to the
    /// client's IP.
    pub api_key: bool,
}

impl Credentials {
    /// By name: `bearer`, `query`, `basic`, `api_key`.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Credentials, String> {
        let mut c = Credentials {
            bearer: false,
            query: false,
            basic: false,
            api_key: false,
        };
        for n in names {
            match n {
                "bearer" => c.bearer = true,
                "query" => c.query = true,
                "basic" => c.basic = true,
                "api_key" => c.api_key = true,
                other => {
                    return Err(format!(
                        "'{other}' is not a credential kind; use bearer, query, basic, api_key"
                    ))
                }
            }
        }
        Ok(c)
    }
}

/// A module's own CORS settings (§10); `None` keeps the global value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ModuleCors {
    pub origins: Option<Vec<String>>,
    pub credentials: Option<bool>,
    pub max_age: Option<std::time::Duration>,
}

/// Scopes an action requires (§8.5). Enforced once auth lands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scopes {
    pub read: String,
    pub write: String,
}

impl Default for Scopes {
    fn default() -> Self {
        Scopes {
            read: "basic".into(),
            write: "write".into(),
        }
    }
}

/// Who may see which rows (§8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OwnerPolicy {
    /// Every action sees only the caller's rows; others' are 404.
    Private,
    /// Everyone reads every row; only the owner writes (others: 403).
    ReadAllWriteOwn,
}

/// The owner column of a resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Owner {
    /// Index into [`Resource::fields`].
    pub field: usize,
    pub policy: OwnerPolicy,
}

/// What a caller does to rows, as the owner rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Owner {
    /// The owner rule (§8.6), the one place it is written: whether only
    /// the caller's own rows are in reach for `access`. A private
    /// resource's rows are their owner's to read and to write; a
    /// read-all/write-own resource's are everyone's to read and their
    /// owner's to write.
    pub fn restricts(&self, access: Access) -> bool {
        match self.policy {
            OwnerPolicy::Private => true,
            OwnerPolicy::ReadAllWriteOwn => access == Access::Write,
        }
    }
}

/// A nested resource's link to its parent (§4.2).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParentLink {
    /// The parent resource's name within the same module.
    pub resource: String,
    /// Index of the child's field holding the parent key (`bookId`).
    pub field: usize,
}

/// How a relation joins (§6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RelationKind {
    HasMany,
    BelongsTo,
}

/// What deleting a row does to the rows that refer to it through a
/// `belongs_to` relation (§15): the foreign key's `ON DELETE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum OnDelete {
    /// The delete is refused (409 `REFERENCE_CONFLICT`) while rows refer.
    #[default]
    Restrict,
    /// The referring rows are deleted with it.
    Cascade,
    /// The referring rows keep living with the key set to `null` (an
    /// optional field only).
    SetNull,
}

impl OnDelete {
    pub fn parse(s: &str) -> Option<OnDelete> {
        Some(match s {
            "restrict" => OnDelete::Restrict,
            "cascade" => OnDelete::Cascade,
            "set_null" => OnDelete::SetNull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnDelete::Restrict => "restrict",
            OnDelete::Cascade => "cascade",
            OnDelete::SetNull => "set_null",
        }
    }

    /// A database's name of a delete action; `None` for one restkit does
    /// not declare (`NO ACTION`, `SET DEFAULT`).
    pub fn from_sql(action: &str) -> Option<OnDelete> {
        match action.to_ascii_uppercase().as_str() {
            "RESTRICT" => Some(OnDelete::Restrict),
            "CASCADE" => Some(OnDelete::Cascade),
            "SET NULL" => Some(OnDelete::SetNull),
            _ => None,
        }
    }

    /// The SQL action, as both databases spell it.
    pub fn sql(self) -> &'static str {
        match self {
            OnDelete::Restrict => "RESTRICT",
            OnDelete::Cascade => "CASCADE",
            OnDelete::SetNull => "SET NULL",
        }
    }
}

/// A relation that `expand=` can embed; a `belongs_to` one is also a
/// foreign key in the database (§15).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Relation {
    pub name: String,
    pub kind: RelationKind,
    /// Target resource name in the same module.
    pub resource: String,
    /// API name of the key: on the target for has-many, on this resource for
    /// belongs-to.
    pub foreign_key: String,
    /// belongs-to only: what deleting the target does to this resource's
    /// rows that name it.
    pub on_delete: OnDelete,
}

/// Which fields an action may read or write (Yii "scenarios").
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Scenarios {
    pub list: Option<Vec<usize>>,
    pub view: Option<Vec<usize>>,
    pub create: Option<Vec<usize>>,
    pub update: Option<Vec<usize>>,
}

/// A table served as a resource, or a hand-written [`Controller`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resource {
    /// Plural URL segment (`books`).
    pub name: String,
    pub table: String,
    pub fields: Vec<Field>,
    /// Index of the primary key in `fields`.
    pub primary_key: usize,
    pub bulk: bool,
    pub sync: bool,
    pub links: bool,
    pub scopes: Scopes,
    pub owner: Option<Owner>,
    pub parent: Option<ParentLink>,
    pub relations: Vec<Relation>,
    pub scenarios: Scenarios,
    /// Fields usable in `q`/`filter` (§6.9); `None`: every readable field.
    pub filterable: Option<Vec<usize>>,
    /// Fields usable in `sort`; `None`: every readable field.
    pub sortable: Option<Vec<usize>>,
    /// Default count mode (§5.2).
    pub count: CountMode,
    /// Page by cursor unless asked otherwise (§6.8).
    pub cursor_pagination: bool,
    /// `Cache-Control` of its GET/HEAD responses (§5.6); `None`: `no-cache`
    /// (clients revalidate with the ETag).
    pub cache_control: Option<String>,
    /// Actions under this resource's path (`/books/search`, `/books/{id}/borrow`).
    pub actions: Vec<Action>,
    /// Name of a hand-written [`crate::controller::Controller`] registered
    /// in the [`crate::registry::Registry`], which then serves this path
    /// instead of the table (the model holds names, never code).
    pub controller: Option<String>,
    /// Module prefix this resource belongs to; filled in by validation.
    pub module_prefix: String,
    /// What the resource holds, for the generated documentation (§11).
    pub description: String,
    /// Its own rate limits (§9), over the global tiers.
    pub rate_limit: RateLimitOverride,
    /// The table's earlier name, declared so `migrate` renames the table
    /// instead of making an empty one (§15).
    pub renamed_from: Option<String>,
}

/// Rate limits (§9) a resource or an action sets for itself; `None` keeps
/// the global tier. `requests = 0` turns the tier off there.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RateLimitOverride {
    pub anonymous: Option<RateTier>,
    pub authenticated: Option<RateTier>,
}

/// `requests` per `period` sustained, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateTier {
    pub requests: u32,
    pub period: std::time::Duration,
    pub burst: u32,
}

impl RateTier {
    /// `requests` per `period`, all of which may come at once.
    pub fn new(requests: u32, period: std::time::Duration) -> RateTier {
        RateTier {
            requests,
            period,
            burst: requests,
        }
    }

    /// Up to `burst` at once, refilled at `requests` per `period`.
    pub fn burst(self, burst: u32) -> RateTier {
        RateTier { burst, ..self }
    }
}

/// How totals are counted (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum CountMode {
    #[default]
    Exact,
    Estimated,
    None,
}

impl CountMode {
    pub fn parse(s: &str) -> Option<CountMode> {
        match s {
            "exact" => Some(CountMode::Exact),
            "estimated" => Some(CountMode::Estimated),
            "none" => Some(CountMode::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CountMode::Exact => "exact",
            CountMode::Estimated => "estimated",
            CountMode::None => "none",
        }
    }
}

/// Declared type of a field. Drives SQL column types, JSON Schema and
/// decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FieldType {
    Integer,
    Number,
    String,
    Boolean,
    /// RFC 3339 timestamp, stored in UTC.
    DateTime,
    /// A calendar date, `YYYY-MM-DD` (years 0001–9999), stored as that
    /// text (which sorts as the dates do).
    Date,
    /// A time of day, `HH:MM:SS[.fraction]`, no time zone; stored as that
    /// text.
    Time,
    /// An exact decimal of `precision` digits, `scale` of them after the
    /// point: served as a string (`"12.30"`), stored as a 64-bit integer
    /// count of `10^-scale` (so never a binary float, and compared and
    /// summed exactly).
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// A UUID, stored and served lowercase and hyphenated.
    Uuid,
    /// Any JSON value, stored as text.
    Json,
}

impl FieldType {
    pub fn parse(s: &str) -> Option<FieldType> {
        Some(match s {
            "integer" | "int" => FieldType::Integer,
            "number" | "float" | "double" => FieldType::Number,
            "string" | "text" => FieldType::String,
            "boolean" | "bool" => FieldType::Boolean,
            "datetime" | "timestamp" => FieldType::DateTime,
            "date" => FieldType::Date,
            "time" => FieldType::Time,
            // `precision` and `scale` of the declaration replace these.
            "decimal" | "numeric" => FieldType::Decimal {
                precision: value::MAX_DECIMAL_PRECISION,
                scale: 2,
            },
            "uuid" => FieldType::Uuid,
            "json" => FieldType::Json,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
            FieldType::DateTime => "datetime",
            FieldType::Date => "date",
            FieldType::Time => "time",
            FieldType::Decimal { .. } => "decimal",
            FieldType::Uuid => "uuid",
            FieldType::Json => "json",
        }
    }

    /// The type with its parameters: `decimal(10,2)`.
    pub fn describe(self) -> String {
        match self {
            FieldType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            other => other.as_str().to_string(),
        }
    }

    /// Served as JSON text whose order is the values' order (dates,
    /// times, timestamps, UUIDs) rather than free text.
    pub fn is_canonical_text(self) -> bool {
        matches!(
            self,
            FieldType::DateTime | FieldType::Date | FieldType::Time | FieldType::Uuid
        )
    }
}

/// One field of a resource: its API name, its column and its constraints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Field {
    /// Name on the wire (`authorName`).
    pub name: String,
    /// Column in the table (`author_name`).
    pub column: String,
    pub ty: FieldType,
    pub primary_key: bool,
    pub required: bool,
    /// Served but never written by clients; values sent are ignored.
    pub read_only: bool,
    /// Never readable in any format or path; not writable either.
    pub hidden: bool,
    pub unique: bool,
    /// Gets a (non-unique) index: for columns filtered or sorted on.
    pub indexed: bool,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub pattern: Option<String>,
    pub enumeration: Option<Vec<Value>>,
    pub default: Option<Value>,
    /// Set by restkit on insert.
    pub created_at: bool,
    /// Set by restkit on every write.
    pub updated_at: bool,
    /// What the value means, for the generated documentation (§11).
    pub description: String,
    /// The field's earlier name (or its column's), declared so `migrate`
    /// renames the column instead of adding an empty one (§15).
    pub renamed_from: Option<String>,
    /// A `uuid` field restkit fills with a random (v4) UUID on create when
    /// the client sends none.
    pub generated: bool,
    /// A `json` field's own JSON Schema, which its values must satisfy.
    pub json_schema: Option<Value>,
}

impl Field {
    pub fn new(name: impl Into<String>, ty: FieldType) -> Field {
        let name = name.into();
        Field {
            column: snake_case(&name),
            name,
            ty,
            primary_key: false,
            required: false,
            read_only: false,
            hidden: false,
            unique: false,
            indexed: false,
            max_length: None,
            min_length: None,
            minimum: None,
            maximum: None,
            pattern: None,
            enumeration: None,
            default: None,
            created_at: false,
            updated_at: false,
            description: String::new(),
            renamed_from: None,
            generated: false,
            json_schema: None,
        }
    }

    /// Clients may send a value for it.
    pub fn writable(&self) -> bool {
        !(self.read_only || self.hidden || self.primary_key || self.created_at || self.updated_at)
    }
}

/// HTTP methods an action may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub fn parse(s: &str) -> Option<Verb> {
        Some(match s.to_ascii_uppercase().as_str() {
            "GET" => Verb::Get,
            "POST" => Verb::Post,
            "PUT" => Verb::Put,
            "PATCH" => Verb::Patch,
            "DELETE" => Verb::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Verb::Get)
    }
}

/// Where a custom action hangs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ActionLevel {
    /// `/books/search`
    Collection,
    /// `/books/{id}/borrow`
    Record,
    /// A module-level path (`/health/echo`).
    Module,
}

/// A custom action (§4.3): a path and verb mapped to a named handler.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Action {
    /// Path segment (resource actions) or path below the module prefix
    /// (module actions, starting with `/`).
    pub path: String,
    pub verb: Verb,
    pub level: ActionLevel,
    /// Name the handler was registered under (`users::me`).
    pub handler: String,
    /// JSON Schema for the merged query + body parameters.
    pub input: Option<Value>,
    /// Scope required; `None` takes the read/write default.
    pub scope: Option<String>,
    /// One line for the documentation (§11); `description` says more.
    pub summary: String,
    pub description: String,
    /// Its own rate limits (§9), over its resource's and the global ones.
    pub rate_limit: RateLimitOverride,
}

/// A problem found while checking a model; names the place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {problem}")]
pub struct ModelError {
    pub place: String,
    pub problem: String,
}

impl ModelError {
    pub fn new(place: impl Into<String>, problem: impl Into<String>) -> ModelError {
        ModelError {
            place: place.into(),
            problem: problem.into(),
        }
    }
}

impl ApiModel {
    /// The tables whose deletions leave tombstones (§6.7), each once.
    pub fn sync_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = self
            .modules
            .iter()
            .flat_map(|m| m.resources.iter())
            .filter(|r| r.sync && r.controller.is_none())
            .map(|r| r.table.clone())
            .collect();
        tables.sort();
        tables.dedup();
        tables
    }

    /// Checks cross-references (parents, relations, owners, duplicates) and
    /// fills derived data. Called once before serving.
    pub fn validate(&mut self) -> Result<(), ModelError> {
        let mut prefixes = HashMap::new();
        for (mi, module) in self.modules.iter_mut().enumerate() {
            let place = format!("module[{mi}] ({})", module.prefix);
            if !module.prefix.starts_with('/') || module.prefix.ends_with('/') {
                return Err(ModelError::new(
                    place,
                    "prefix must start with '/' and not end with one",
                ));
            }
            if prefixes.insert(module.prefix.clone(), mi).is_some() {
                return Err(ModelError::new(place, "duplicate prefix"));
            }
            let names: Vec<String> = module.resources.iter().map(|r| r.name.clone()).collect();
            for (i, name) in names.iter().enumerate() {
                if names[..i].contains(name) {
                    return Err(ModelError::new(
                        &place,
                        format!("resource '{name}' declared twice"),
                    ));
                }
            }
            for res in module.resources.iter_mut() {
                let r = Arc::make_mut(res);
                r.module_prefix = module.prefix.clone();
                let rplace = format!("{place}.resource '{}'", r.name);
                r.check(&rplace)?;
                if let Some(parent) = &r.parent {
                    if !names.contains(&parent.resource) || parent.resource == r.name {
                        return Err(ModelError::new(
                            &rplace,
                            format!(
                                "parent '{}' is not a resource of this module",
                                parent.resource
                            ),
                        ));
                    }
                }
                for rel in &r.relations {
                    // An embedded relation and a field of one name would
                    // overwrite each other in a record.
                    if r.fields.iter().any(|f| f.name == rel.name) {
                        return Err(ModelError::new(
                            &rplace,
                            format!("relation '{}' has the name of a field", rel.name),
                        ));
                    }
                    if !names.contains(&rel.resource) {
                        return Err(ModelError::new(
                            &rplace,
                            format!(
                                "relation '{}' targets unknown resource '{}'",
                                rel.name, rel.resource
                            ),
                        ));
                    }
                    if rel.kind == RelationKind::BelongsTo {
                        r.check_belongs_to(rel, &rplace)?;
                    }
                }
            }
            for r in &module.resources {
                for rel in r
                    .relations
                    .iter()
                    .filter(|l| l.kind == RelationKind::BelongsTo)
                {
                    let target = module.find_resource(&rel.resource);
                    if r.controller.is_none() && target.is_some_and(|t| t.controller.is_some()) {
                        return Err(ModelError::new(
                            format!("{place}.resource '{}'", r.name),
                            format!(
                                "relation '{}': '{}' is served by a controller, not a table, so no foreign key can refer to it",
                                rel.name, rel.resource
                            ),
                        ));
                    }
                }
            }
            // Parent chains must end: a cycle would recurse forever in routing.
            for r in &module.resources {
                let mut seen = vec![r.name.as_str()];
                let mut cur = r.parent.as_ref();
                while let Some(p) = cur {
                    if seen.contains(&p.resource.as_str()) {
                        return Err(ModelError::new(
                            &place,
                            format!("parent cycle at '{}'", r.name),
                        ));
                    }
                    seen.push(&p.resource);
                    cur = module
                        .resources
                        .iter()
                        .find(|x| x.name == p.resource)
                        .and_then(|x| x.parent.as_ref());
                }
            }
        }
        // Sync is a property of the table, not of one declaration over it:
        // every delete from a sync table leaves a tombstone, whichever
        // module's route made it, so every declaration over it serves
        // `timestamp=` and `X-Sync-Timestamp` too.
        let sync_tables = self.sync_tables();
        // Every declaration over a sync table must stamp the same column,
        // or writes through one would be invisible to syncs through another.
        let mut stamps: HashMap<&str, (&str, &str)> = HashMap::new();
        for r in self
            .modules
            .iter()
            .flat_map(|m| m.resources.iter())
            .filter(|r| r.controller.is_none() && sync_tables.contains(&r.table))
        {
            if let Some(f) = r.updated_at() {
                match stamps.get(r.table.as_str()) {
                    Some((column, first)) if *column != f.column => {
                        return Err(ModelError::new(
                            format!("resource '{}'", r.name),
                            format!(
                                "table '{}' is synced: its updated_at column is '{}' in '{}' but '{}' here",
                                r.table, column, first, f.column
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        stamps.insert(&r.table, (&f.column, &r.name));
                    }
                }
            }
        }
        // One column, one foreign key, whichever declarations ask for it.
        plan::foreign_keys(self)?;
        for module in &mut self.modules {
            for res in module.resources.iter_mut() {
                if !res.sync && res.controller.is_none() && sync_tables.contains(&res.table) {
                    Arc::make_mut(res).sync = true;
                }
                if res.sync && res.controller.is_none() && res.updated_at().is_none() {
                    return Err(ModelError::new(
                        format!("module ({}).resource '{}'", module.prefix, res.name),
                        format!(
                            "table '{}' is synced (sync = true), so it needs a field with updated_at = true",
                            res.table
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Module {
    pub fn find_resource(&self, name: &str) -> Option<&Arc<Resource>> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// The derived facts of `r` (see [`plan`]).
    pub fn plan(&self, r: &Arc<Resource>) -> plan::ResourcePlan {
        plan::ResourcePlan::new(self, r)
    }
}

impl Resource {
    /// A `belongs_to` relation's key: an integer field of this resource
    /// (the targets' keys are integers), not its own key, and nullable
    /// when a delete is to set it to null.
    fn check_belongs_to(&self, rel: &Relation, place: &str) -> Result<(), ModelError> {
        let problem = match self.find_field(&rel.foreign_key) {
            None => format!("no field '{}' to hold the key", rel.foreign_key),
            Some(f) if f.primary_key => format!("'{}' is the primary key", f.name),
            Some(f) if f.ty != FieldType::Integer => format!(
                "'{}' is {}, but the key of a record is an integer",
                f.name,
                f.ty.as_str()
            ),
            Some(f) if rel.on_delete == OnDelete::SetNull && f.required => format!(
                "on_delete = \"set_null\" needs '{}' to be optional, but it is required; use \"restrict\" or \"cascade\", or make it optional",
                f.name
            ),
            Some(_) => return Ok(()),
        };
        Err(ModelError::new(
            place,
            format!("relation '{}': {problem}", rel.name),
        ))
    }

    /// The owner field that confines `access` to the caller's own rows
    /// ([`Owner::restricts`]), if any.
    pub fn owner_field(&self, access: Access) -> Option<usize> {
        self.owner
            .as_ref()
            .filter(|o| o.restricts(access))
            .map(|o| o.field)
    }

    /// A resource over `table` with no fields yet; see [`builder`].
    pub fn new(name: impl Into<String>, table: impl Into<String>) -> Resource {
        Resource {
            name: name.into(),
            table: table.into(),
            fields: Vec::new(),
            primary_key: 0,
            bulk: false,
            sync: false,
            links: false,
            scopes: Scopes::default(),
            owner: None,
            parent: None,
            relations: Vec::new(),
            scenarios: Scenarios::default(),
            filterable: None,
            sortable: None,
            count: CountMode::Exact,
            cursor_pagination: false,
            cache_control: None,
            actions: Vec::new(),
            controller: None,
            module_prefix: String::new(),
            description: String::new(),
            rate_limit: RateLimitOverride::default(),
            renamed_from: None,
        }
    }

    pub fn find_field(&self, api_name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == api_name)
    }

    pub fn field_index(&self, api_name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == api_name)
    }

    pub fn pk(&self) -> &Field {
        &self.fields[self.primary_key]
    }

    /// Fields served by list (`view == false`) or view (`true`), in
    /// declaration order: never hidden ones.
    pub fn readable(&self, view: bool) -> Vec<usize> {
        let chosen = if view {
            self.scenarios.view.as_ref()
        } else {
            self.scenarios.list.as_ref()
        };
        (0..self.fields.len())
            .filter(|i| !self.fields[*i].hidden)
            .filter(|i| chosen.is_none_or(|c| c.contains(i)))
            .collect()
    }

    /// Fields a client may send on create (`create == true`) or update.
    pub fn writable(&self, create: bool) -> Vec<usize> {
        let chosen = if create {
            self.scenarios.create.as_ref()
        } else {
            self.scenarios.update.as_ref()
        };
        (0..self.fields.len())
            .filter(|i| self.fields[*i].writable())
            .filter(|i| {
                // The parent key comes from the path, not the body.
                self.parent.as_ref().is_none_or(|p| p.field != *i)
            })
            .filter(|i| self.owner.as_ref().is_none_or(|o| o.field != *i))
            .filter(|i| chosen.is_none_or(|c| c.contains(i)))
            .collect()
    }

    pub fn updated_at(&self) -> Option<&Field> {
        self.fields.iter().find(|f| f.updated_at)
    }

    fn check(&mut self, place: &str) -> Result<(), ModelError> {
        if self.controller.is_some() {
            return Ok(());
        }
        if !is_identifier(&self.name) {
            return Err(ModelError::new(
                place,
                "name must be letters, digits, '_' or '-'",
            ));
        }
        if !is_identifier(&self.table) {
            return Err(ModelError::new(
                place,
                "table must be letters, digits or '_'",
            ));
        }
        let renames = std::iter::once(&self.renamed_from)
            .chain(self.fields.iter().map(|f| &f.renamed_from))
            .flatten();
        for old in renames {
            if !is_identifier(old) {
                return Err(ModelError::new(
                    place,
                    format!("renamed_from '{old}' must be letters, digits or '_'"),
                ));
            }
        }
        let pks: Vec<usize> = (0..self.fields.len())
            .filter(|i| self.fields[*i].primary_key)
            .collect();
        match pks.as_slice() {
            [one] => self.primary_key = *one,
            [] => return Err(ModelError::new(place, "no field has primary_key = true")),
            _ => return Err(ModelError::new(place, "more than one primary key")),
        }
        if self.fields[self.primary_key].ty != FieldType::Integer {
            return Err(ModelError::new(place, "the primary key must be an integer"));
        }
        for (i, f) in self.fields.iter().enumerate() {
            if !is_identifier(&f.name) || !is_identifier(&f.column) {
                return Err(ModelError::new(
                    format!("{place}.fields.{}", f.name),
                    "names and columns must be letters, digits or '_'",
                ));
            }
            if self.fields[..i]
                .iter()
                .any(|g| g.name == f.name || g.column == f.column)
            {
                return Err(ModelError::new(
                    format!("{place}.fields.{}", f.name),
                    "duplicate field name or column",
                ));
            }
            if let Some(p) = &f.pattern {
                if let Err(e) = jsonschema::validator_for(&serde_json::json!({"pattern": p})) {
                    return Err(ModelError::new(
                        format!("{place}.fields.{}.pattern", f.name),
                        e.to_string(),
                    ));
                }
            }
        }
        for f in self.fields.iter_mut() {
            check_constraints(f, &format!("{place}.fields.{}", f.name))?;
        }
        if let Some(cc) = &self.cache_control {
            if http::HeaderValue::from_str(cc).is_err() || cc.is_empty() {
                return Err(ModelError::new(
                    format!("{place}.cache_control"),
                    "must be a Cache-Control header value, e.g. \"max-age=60\"",
                ));
            }
        }
        Ok(())
    }
}

/// A field's own constraints agree with each other and with its default:
/// `minimum > maximum`, or a default that its own field would refuse, is a
/// start-up error naming the key. A whole-number default of an integer
/// field is stored as an integer.
fn check_constraints(f: &mut Field, place: &str) -> Result<(), ModelError> {
    if let (Some(lo), Some(hi)) = (f.minimum, f.maximum) {
        if lo > hi {
            return Err(ModelError::new(
                format!("{place}.minimum"),
                format!("minimum {lo} is greater than maximum {hi}"),
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (f.min_length, f.max_length) {
        if lo > hi {
            return Err(ModelError::new(
                format!("{place}.min_length"),
                format!("min_length {lo} is greater than max_length {hi}"),
            ));
        }
    }
    if let FieldType::Decimal { precision, scale } = f.ty {
        if precision == 0 || precision > value::MAX_DECIMAL_PRECISION || scale > precision {
            return Err(ModelError::new(
                place,
                format!(
                    "a decimal has 1 to {} digits (precision), of which 0 to all are after the point (scale); {precision} and {scale} are not that",
                    value::MAX_DECIMAL_PRECISION
                ),
            ));
        }
    }
    if f.generated && f.ty != FieldType::Uuid {
        return Err(ModelError::new(
            format!("{place}.generated"),
            "only a uuid field can be generated",
        ));
    }
    if let Some(s) = &f.json_schema {
        if f.ty != FieldType::Json {
            return Err(ModelError::new(
                format!("{place}.schema"),
                "only a json field takes a schema",
            ));
        }
        if let Err(e) = jsonschema::validator_for(s) {
            return Err(ModelError::new(
                format!("{place}.schema"),
                format!("not a valid JSON Schema: {e}"),
            ));
        }
    }
    let numeric = matches!(
        f.ty,
        FieldType::Integer | FieldType::Number | FieldType::Decimal { .. }
    );
    if (f.minimum.is_some() || f.maximum.is_some()) && !numeric {
        return Err(ModelError::new(
            place,
            format!(
                "minimum/maximum apply to numbers, not to a {} field",
                f.ty.as_str()
            ),
        ));
    }
    let Some(mut default) = f.default.clone() else {
        return Ok(());
    };
    if f.unique && !default.is_null() {
        return Err(ModelError::new(
            format!("{place}.default"),
            "a unique field cannot have a default: every record created without it would \
             share the value (and adding the column to a table with rows could not succeed)",
        ));
    }
    if let Err(refusal) = value::normalize(f, &mut default) {
        return Err(ModelError::new(
            format!("{place}.default"),
            format!("the default {default} {}", refusal.message()),
        ));
    }
    let schema = schema::field_schema(f);
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| ModelError::new(place, e.to_string()))?;
    if let Some(e) = validator.iter_errors(&default).next() {
        return Err(ModelError::new(
            format!("{place}.default"),
            format!("the default {default} does not fit the field: {e}"),
        ));
    }
    f.default = Some(default);
    Ok(())
}

/// `authorName` → `author_name`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// `author_name` → `authorName`.
pub fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for ch in name.chars() {
        if ch == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.push(ch.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_conversions_round_trip() {
        assert_eq!(snake_case("authorName"), "author_name");
        assert_eq!(camel_case("author_name"), "authorName");
        assert_eq!(camel_case("update_time"), "updateTime");
        assert_eq!(camel_case("id"), "id");
        assert_eq!(snake_case("createdAt"), "created_at");
    }

    #[test]
    fn identifiers_reject_sql_fragments() {
        assert!(is_identifier("books"));
        assert!(!is_identifier("books; drop table x"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("a\"b"));
    }
}
