//! Controllers: what runs for a route once the request is understood (§2.2).
//!
//! A [`Controller`] has one method per §4.1 operation; a method it does not
//! list in [`Controller::operations`] answers 405 with `Allow`. Methods take
//! a [`Ctx`] (identity, path parameters, query, store) and return a
//! [`Reply`]: data, not HTTP. The dispatcher turns a reply into status,
//! headers and a body in the negotiated format.
//!
//! [`table::TableController`] serves a declared table; hand-written
//! controllers implement the same trait. [`ActionHandler`]s serve custom
//! actions (§4.3).

pub mod table;

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, Method};
use serde::Serialize;
use serde_json::Value;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::model::Resource;
use crate::store::{Record, Store};

/// The operations of §4.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Find,
    Fetch,
    Create,
    Update,
    Patch,
    Delete,
    BulkUpdate,
    DeleteAll,
}

impl Operation {
    pub fn method(self) -> Method {
        match self {
            Operation::Find | Operation::Fetch => Method::GET,
            Operation::Create => Method::POST,
            Operation::Update | Operation::BulkUpdate => Method::PUT,
            Operation::Patch => Method::PATCH,
            Operation::Delete | Operation::DeleteAll => Method::DELETE,
        }
    }

    pub fn on_record(self) -> bool {
        matches!(
            self,
            Operation::Fetch | Operation::Update | Operation::Patch | Operation::Delete
        )
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Operation::Find | Operation::Fetch)
    }

    pub fn takes_body(self) -> bool {
        matches!(
            self,
            Operation::Create | Operation::Update | Operation::Patch | Operation::BulkUpdate
        )
    }
}

/// Everything a controller may know about the request.
#[derive(Clone)]
pub struct Ctx {
    pub identity: Option<Identity>,
    /// Path parameters by declared name (`bookId`), parents first; the
    /// record's own id is passed to the method separately.
    pub params: Vec<(String, String)>,
    /// Decoded query-string pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    /// `scheme://host[:port]` for absolute links.
    pub base_url: String,
    /// The request path as received.
    pub path: String,
    pub store: Store,
    /// Serve `snake_case` keys of handler values as `camelCase`.
    pub convert_snake_case: bool,
    /// The negotiated minor version (§4.5), when the module lists any.
    pub version: Option<String>,
}

impl Ctx {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The identity's user id, or 401.
    pub fn require_user(&self) -> Result<i64, ApiError> {
        match &self.identity {
            Some(Identity {
                user_id: Some(id), ..
            }) => Ok(*id),
            Some(_) => Err(ApiError::forbidden(
                "This action needs a user, not a client.",
            )),
            None => Err(ApiError::unauthorized("Sign in to use this action.")),
        }
    }
}

/// Where a collection reply sits (drives pagination headers, Link and the
/// envelope's `_meta`/`_links`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Total matching records; `None` when not counted.
    pub total: Option<u64>,
    /// The count mode used, when the request asked for one
    /// (`Preference-Applied: count=…`).
    pub count_applied: Option<&'static str>,
    pub per_page: u64,
    /// Offset of the first record; `None` for cursor pages.
    pub offset: Option<u64>,
    /// Cursor of the next page, for cursor pages that have one.
    pub next_cursor: Option<String>,
    /// Whether a next offset page exists when the total is unknown.
    pub has_more: bool,
    /// Sync resources: the next `timestamp` and the ids deleted since the
    /// request's `timestamp` (§6.7).
    pub sync: Option<SyncInfo>,
}

/// Sync data of a collection reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncInfo {
    pub next_timestamp: String,
    /// `Some` when the request gave `timestamp=`.
    pub deleted: Option<Vec<i64>>,
    /// The sync mark of the traversal's first page, which `next` links
    /// carry as `sync_mark` (not for feeds, whose position moves instead).
    pub mark: Option<String>,
    /// A feed's position to continue from: the `next` link carries it as
    /// its `timestamp` (and starts again at offset 0).
    pub next_position: Option<String>,
}

/// What a controller answers. The dispatcher renders it.
#[derive(Debug)]
pub enum Reply {
    /// 200 with a value (records, or anything a handler returns).
    Value(Value),
    /// 200 with one record.
    Record(Record),
    /// 200 with one record that knows when it last changed (its
    /// `updated_at`): served with `Last-Modified` (§5.6).
    Dated {
        record: Record,
        modified: chrono::DateTime<chrono::Utc>,
    },
    /// 200 with records of a collection.
    Collection { records: Vec<Record>, page: Page },
    /// 201 with the new record; `location` is the record's path.
    Created { record: Record, location: String },
    /// 204, no body.
    Empty,
}

impl Reply {
    /// Any serializable value; `null` (e.g. `()`) becomes 204.
    pub fn json<T: Serialize>(value: &T) -> Result<Reply, ApiError> {
        match serde_json::to_value(value).map_err(ApiError::internal)? {
            Value::Null => Ok(Reply::Empty),
            v => Ok(Reply::Value(v)),
        }
    }
}

/// What happened to a record, as a live feed tells it (§16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// One change: its sync position (`time~key`, a `timestamp=` that
/// resumes right after it), and the record as the list shows it (for a
/// deletion, its key).
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: ChangeKind,
    pub position: String,
    pub data: Value,
    /// Where the record was made (`time~key`), when the resource keeps a
    /// creation time: `created` or `updated` depends on whether a
    /// follower stands before it.
    pub made: Option<String>,
}

/// The changes after a position, in position order, and where the next
/// read starts: past every change shown and every one the caller may not
/// see. `more`: changes beyond `position` are known to wait.
#[derive(Debug, Clone)]
pub struct Changes {
    pub changes: Vec<Change>,
    pub position: String,
    pub more: bool,
    /// Where the read itself got to, whatever position it was asked from
    /// (`position` never moves back past a later one it was given): a
    /// place from which to read on for others.
    pub reached: String,
}

fn not_implemented() -> ApiError {
    // The dispatcher checks `operations()` first; reaching this means a
    // controller listed an operation it did not write.
    ApiError::internal("controller listed an operation it does not implement")
}

/// A hand-written (or table-backed) endpoint set for one resource path.
#[async_trait]
pub trait Controller: Send + Sync + 'static {
    /// The operations this controller implements; others answer 405.
    fn operations(&self) -> Vec<Operation>;

    /// The resource declaration, when the controller serves one.
    fn resource(&self) -> Option<&Arc<Resource>> {
        None
    }

    /// The JSON Schema a body of `op` must satisfy, when it has one:
    /// used to type form bodies and to describe the route (OPTIONS).
    fn input_schema(&self, _op: Operation) -> Option<&Value> {
        None
    }

    /// What its read parameters (`fields`, `sort`, `q`, …) accept, when it
    /// takes them: the documentation (§11) lists exactly these.
    fn query_shape(&self) -> Option<crate::query::QueryShape> {
        None
    }

    /// Whether its collection and records can be followed live (§16).
    fn live(&self) -> bool {
        false
    }

    /// The changes after position `after` (`None`: from now) that a GET of
    /// the collection — or of record `id` — would show the caller, at most
    /// `limit`: what a live feed sends next.
    async fn changes(
        &self,
        _cx: &Ctx,
        _id: Option<&str>,
        _after: Option<&str>,
        _limit: u64,
    ) -> Result<Changes, ApiError> {
        Err(not_implemented())
    }

    async fn find(&self, _cx: &Ctx) -> Result<Reply, ApiError> {
        Err(not_implemented())
    }
    async fn fetch(&self, _cx: &Ctx, _id: &str) -> Result<Reply, ApiError> {
        Err(not_implemented())
    }
    async fn create(&self, _cx: &Ctx, _body: Value) -> Result<Reply, ApiError> {
        Err(not_implemented())
    }
    async fn update(&self, _cx: &Ctx, _id: &str, _body: Value) -> Result<Reply, ApiError> {
        Err(not_implemented())
    }
    async fn patch(&self, _cx: &Ctx, _id: &str, _patch: Value) -> Result<Reply, ApiError> {
        Err(not_implemented())
    }
    async fn delete(&self, _cx: &Ctx, _id: &str) -> Result<Reply, ApiError> {
        Err(not_implemented())
    }
    async fn bulk_update(&self, _cx: &Ctx, _body: Value) -> Result<Reply, ApiError> {
        Err(not_implemented())
    }
    async fn delete_all(&self, _cx: &Ctx) -> Result<Reply, ApiError> {
        Err(not_implemented())
    }
}

/// Input of a custom action: its validated, coerced parameters.
#[derive(Debug, Clone)]
pub struct ActionInput {
    /// Query and body parameters merged (body wins), nested brackets
    /// parsed, coerced and validated by the action's schema.
    pub params: Value,
    /// The record id for record-level actions.
    pub id: Option<String>,
    /// The resource a resource action hangs on.
    pub resource: Option<Arc<Resource>>,
}

/// The code behind a custom action (§4.3), registered by name.
#[async_trait]
pub trait ActionHandler: Send + Sync + 'static {
    async fn call(&self, cx: Ctx, input: ActionInput) -> Result<Reply, ApiError>;

    /// The JSON Schema its parameters must satisfy, when the handler
    /// knows it (a typed handler derives it from its input type): used
    /// when the declaration gives no `input`.
    fn input_schema(&self) -> Option<Value> {
        None
    }

    /// The JSON Schema of what it answers, for the documentation.
    fn output_schema(&self) -> Option<Value> {
        None
    }
}

/// A handler of typed input and output ([`crate::registry::Registry::handle_typed`]):
/// the parameters, validated by the schema derived from `In`, are
/// deserialized into `In`; the `Out` it returns is served, and both
/// schemas are in the OpenAPI document.
pub struct TypedHandler<F, In, Out> {
    f: F,
    input: Value,
    output: Value,
    types: std::marker::PhantomData<fn(In) -> Out>,
}

/// `T`'s JSON Schema (draft 2020-12) with every subschema inlined, so it
/// can stand inside another document (an OpenAPI operation) without
/// references into a `$defs` it does not carry.
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(m) = schema.as_object_mut() {
        m.remove("$schema");
    }
    schema
}

impl<F, In, Out> TypedHandler<F, In, Out>
where
    In: schemars::JsonSchema,
    Out: schemars::JsonSchema,
{
    pub fn new(f: F) -> Self {
        TypedHandler {
            f,
            input: schema_of::<In>(),
            output: schema_of::<Out>(),
            types: std::marker::PhantomData,
        }
    }
}

#[async_trait]
impl<F, Fut, In, Out> ActionHandler for TypedHandler<F, In, Out>
where
    F: Fn(Ctx, In) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Out, ApiError>> + Send + 'static,
    In: serde::de::DeserializeOwned + Send + 'static,
    Out: serde::Serialize + Send + 'static,
{
    async fn call(&self, cx: Ctx, input: ActionInput) -> Result<Reply, ApiError> {
        // The schema has checked the parameters; what it cannot say (a
        // custom Deserialize) is still the client's mistake, not ours.
        let typed: In = serde_json::from_value(input.params).map_err(|e| {
            ApiError::validation(vec![crate::error::FieldError {
                field: String::new(),
                code: "invalid".into(),
                message: e.to_string(),
            }])
        })?;
        let out = (self.f)(cx, typed).await?;
        Reply::json(&out)
    }

    fn input_schema(&self) -> Option<Value> {
        Some(self.input.clone())
    }

    fn output_schema(&self) -> Option<Value> {
        Some(self.output.clone())
    }
}

/// Adapts an async closure into an [`ActionHandler`].
pub struct FnHandler<F>(pub F);

#[async_trait]
impl<F, Fut> ActionHandler for FnHandler<F>
where
    F: Fn(Ctx, ActionInput) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Reply, ApiError>> + Send + 'static,
{
    async fn call(&self, cx: Ctx, input: ActionInput) -> Result<Reply, ApiError> {
        (self.0)(cx, input).await
    }
}
