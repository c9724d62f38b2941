//! Building an [`ApiModel`] in Rust (§2.2): the same model the TOML loader
//! builds, so everything downstream is shared.
//!
//! ```
//! use restkit::model::{builder::*, FieldType};
//! let model = ApiModel::builder()
//!     .module(
//!         Module::new("/v1").resource(
//!             Resource::new("notes", "notes")
//!                 .field(Field::new("id", FieldType::Integer).primary_key())
//!                 .field(Field::new("text", FieldType::String).required().max_length(500)),
//!         ),
//!     )
//!     .build()
//!     .unwrap();
//! assert_eq!(model.modules[0].resources[0].name, "notes");
//! ```

use std::sync::Arc;

pub use super::{Action, ActionLevel, ApiModel, Field, Module, OnDelete, Resource, Verb};
use super::{ModelError, Owner, OwnerPolicy, ParentLink, Relation, RelationKind};

/// Collects modules, then checks them.
#[derive(Default)]
pub struct ModelBuilder {
    model: ApiModel,
}

impl ApiModel {
    pub fn builder() -> ModelBuilder {
        ModelBuilder::default()
    }
}

impl ModelBuilder {
    pub fn module(mut self, m: Module) -> Self {
        self.model.modules.push(m);
        self
    }

    pub fn build(mut self) -> Result<ApiModel, ModelError> {
        self.model.validate()?;
        Ok(self.model)
    }
}

impl Module {
    pub fn new(prefix: impl Into<String>) -> Module {
        Module {
            prefix: prefix.into(),
            versions: Vec::new(),
            convert_snake_case: true,
            resources: Vec::new(),
            actions: Vec::new(),
            cors: Default::default(),
            credentials: None,
            description: String::new(),
        }
    }

    /// What the module is, for the generated documentation (§11).
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }

    /// The credential kinds this module's routes accept (§8.4).
    pub fn credentials(mut self, c: super::Credentials) -> Self {
        self.credentials = Some(c);
        self
    }

    /// CORS for this module's routes only (§10); what it leaves `None`
    /// comes from the global `[cors]` settings.
    pub fn cors(mut self, cors: super::ModuleCors) -> Self {
        self.cors = cors;
        self
    }

    pub fn versions(mut self, v: &[&str]) -> Self {
        self.versions = v.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn resource(mut self, r: Resource) -> Self {
        self.resources.push(Arc::new(r));
        self
    }

    /// A module-level action: `path` below the prefix, mapped to a handler
    /// registered under `handler`.
    pub fn action(self, verb: Verb, path: &str, handler: &str) -> Self {
        self.with_action(Action::new(ActionLevel::Module, verb, path, handler))
    }

    /// A module-level action built with [`Action::new`] and its setters.
    pub fn with_action(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }
}

impl Resource {
    /// Rate limits of its own (§9), over the global tiers.
    pub fn rate_limit(mut self, limits: super::RateLimitOverride) -> Self {
        self.rate_limit = limits;
        self
    }

    /// What the resource holds, for the generated documentation (§11).
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }

    /// A resource named `name` with all of `base`'s declaration — table,
    /// fields, relations, owner, actions, options — to change from there
    /// (TOML's `extends`): a later version of an API without repeating
    /// what stays.
    pub fn extending(base: &Resource, name: &str) -> Resource {
        let mut r = base.clone();
        r.name = name.to_string();
        r.module_prefix.clear();
        r.renamed_from = None;
        r
    }

    /// Serves the field named `from` as `to` (its column stays).
    pub fn rename_field(mut self, from: &str, to: &str) -> Self {
        let i = self.field_index(from).expect("rename a declared field");
        self.fields[i].name = to.to_string();
        self
    }

    /// Never readable or writable here (other declarations over the
    /// table may serve it).
    pub fn hide(mut self, name: &str) -> Self {
        let i = self.field_index(name).expect("hide a declared field");
        self.fields[i].hidden = true;
        self
    }

    /// The table's earlier name: `migrate` renames it (§15).
    pub fn renamed_from(mut self, table: &str) -> Self {
        self.renamed_from = Some(table.to_string());
        self
    }

    pub fn field(mut self, f: Field) -> Self {
        self.fields.push(f);
        self
    }

    pub fn bulk(mut self) -> Self {
        self.bulk = true;
        self
    }

    pub fn sync(mut self) -> Self {
        self.sync = true;
        self
    }

    /// Nests this resource under `parent`; `key` is this resource's field
    /// holding the parent's id.
    pub fn nested_under(mut self, parent: &str, key: &str) -> Self {
        let field = self
            .field_index(key)
            .expect("declare the parent key field first");
        self.parent = Some(ParentLink {
            resource: parent.to_string(),
            field,
        });
        self
    }

    pub fn owned_by(mut self, key: &str, policy: OwnerPolicy) -> Self {
        let field = self
            .field_index(key)
            .expect("declare the owner field first");
        self.owner = Some(Owner { field, policy });
        self
    }

    pub fn has_many(mut self, name: &str, resource: &str, foreign_key: &str) -> Self {
        self.relations.push(Relation {
            name: name.into(),
            kind: RelationKind::HasMany,
            resource: resource.into(),
            foreign_key: foreign_key.into(),
            on_delete: OnDelete::default(),
        });
        self
    }

    /// A relation to the resource `foreign_key` (a field of this one, to
    /// declare first) names: a foreign key in the database, with what
    /// deleting the target does to rows here (§15).
    pub fn belongs_to(
        mut self,
        name: &str,
        resource: &str,
        foreign_key: &str,
        on_delete: OnDelete,
    ) -> Self {
        self.relations.push(Relation {
            name: name.into(),
            kind: RelationKind::BelongsTo,
            resource: resource.into(),
            foreign_key: foreign_key.into(),
            on_delete,
        });
        self
    }

    /// `Cache-Control` of GET/HEAD responses (default `no-cache`).
    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_string());
        self
    }

    /// Serves this path with the hand-written controller registered under
    /// `name` ([`crate::registry::Registry::controller`]) instead of the
    /// table.
    pub fn controller(mut self, name: &str) -> Self {
        self.controller = Some(name.to_string());
        self
    }

    pub fn action(self, level: ActionLevel, verb: Verb, path: &str, handler: &str) -> Self {
        self.with_action(Action::new(level, verb, path, handler))
    }

    /// An action built with [`Action::new`] and its setters (input schema,
    /// scope, summary, rate limit).
    pub fn with_action(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }

    /// The scopes reading and writing need (`""`: none, a public route).
    pub fn scopes(mut self, read: &str, write: &str) -> Self {
        self.scopes = super::Scopes {
            read: read.to_string(),
            write: write.to_string(),
        };
        self
    }
}

impl Action {
    /// `verb path` on a record, its collection or (with
    /// [`Module::action`]) the module, answered by the handler registered
    /// as `handler`.
    pub fn new(level: ActionLevel, verb: Verb, path: &str, handler: &str) -> Action {
        Action {
            path: path.to_string(),
            verb,
            level,
            handler: handler.to_string(),
            input: None,
            scope: None,
            summary: String::new(),
            description: String::new(),
            rate_limit: Default::default(),
        }
    }

    /// The JSON Schema its merged query and body parameters must satisfy
    /// (a 422 per failed constraint otherwise); also its OpenAPI body.
    pub fn input(mut self, schema: serde_json::Value) -> Self {
        self.input = Some(schema);
        self
    }

    /// The scope it needs, instead of its resource's read/write scope.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_string());
        self
    }

    /// One line for the documentation.
    pub fn summary(mut self, text: &str) -> Self {
        self.summary = text.to_string();
        self
    }

    /// Its own rate limits, over its resource's and the global ones.
    pub fn rate_limit(mut self, limits: super::RateLimitOverride) -> Self {
        self.rate_limit = limits;
        self
    }
}

impl Field {
    /// What the value means, for the generated documentation (§11).
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_string();
        self
    }

    /// The field's earlier name: `migrate` renames its column (§15).
    pub fn renamed_from(mut self, name: &str) -> Self {
        self.renamed_from = Some(name.to_string());
        self
    }

    pub fn primary_key(mut self) -> Self {
        self.primary_key = true;
        self
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
    pub fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    pub fn indexed(mut self) -> Self {
        self.indexed = true;
        self
    }
    pub fn column(mut self, c: &str) -> Self {
        self.column = c.to_string();
        self
    }
    pub fn max_length(mut self, n: u64) -> Self {
        self.max_length = Some(n);
        self
    }
    pub fn min_length(mut self, n: u64) -> Self {
        self.min_length = Some(n);
        self
    }
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.minimum = Some(min);
        self.maximum = Some(max);
        self
    }
    /// A lower bound alone (`range` sets both).
    pub fn minimum(mut self, min: f64) -> Self {
        self.minimum = Some(min);
        self
    }
    /// An upper bound alone.
    pub fn maximum(mut self, max: f64) -> Self {
        self.maximum = Some(max);
        self
    }
    /// The values the field may hold (an `enum`, §15): validation
    /// refuses others, and the OpenAPI document lists them.
    pub fn one_of<V: Into<serde_json::Value>>(
        mut self,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.enumeration = Some(values.into_iter().map(Into::into).collect());
        self
    }

    /// Its value when a create leaves it out.
    pub fn default_value(mut self, v: impl Into<serde_json::Value>) -> Self {
        self.default = Some(v.into());
        self
    }

    /// A `uuid` field: filled with a random UUID on create when the
    /// client sends none.
    pub fn generated(mut self) -> Self {
        self.generated = true;
        self
    }

    /// A `json` field's values must satisfy `schema`.
    pub fn json_schema(mut self, schema: serde_json::Value) -> Self {
        self.json_schema = Some(schema);
        self
    }

    pub fn pattern(mut self, p: &str) -> Self {
        self.pattern = Some(p.to_string());
        self
    }
    pub fn created_at(mut self) -> Self {
        self.created_at = true;
        self
    }
    pub fn updated_at(mut self) -> Self {
        self.updated_at = true;
        self
    }
}
