//! The route table, derived from the model once at start-up (§4).
//!
//! Every resource yields a collection route and a record route; nested
//! resources hang below their parent's record route; custom actions add
//! their own paths. Each path becomes one [`Route`] holding the endpoints
//! (method → target) served there, so 405 `Allow` lists are precomputed.
//! `restkit routes`, the router and OPTIONS all read this table.
//!
//! Path parameters are registered positionally (`{p0}`, `{p1}`) because the
//! router requires one name per position, while the model names them by
//! field (`bookId`); [`Route::param_names`] maps them back.

use std::sync::Arc;

use http::{header, HeaderValue, Method};
use indexmap::IndexMap;

use crate::controller::table::{TableController, TableOptions};
use crate::controller::{ActionHandler, Controller, Operation};
use crate::model::plan::ResourcePlan;
use crate::model::{Action, ActionLevel, ApiModel, Module, Verb};
use crate::registry::Registry;
use crate::validate::Schema;

/// What an endpoint runs.
#[derive(Clone)]
pub enum Target {
    Operation {
        controller: Arc<dyn Controller>,
        op: Operation,
    },
    Action {
        action: Arc<Action>,
        handler: Arc<dyn ActionHandler>,
        schema: Option<Arc<Schema>>,
        /// The resource's controller, for resource-level actions: record
        /// actions fetch the record through it first (404, scopes).
        controller: Option<Arc<dyn Controller>>,
    },
}

#[derive(Clone)]
pub struct Endpoint {
    pub method: Method,
    pub target: Target,
    /// Scope required (§8.5).
    pub scope: String,
    /// `Cache-Control` of successful GET/HEAD answers (§5.6).
    pub cache_control: HeaderValue,
    /// Its rate-limit policies (§9); set by [`super::limits::assign`].
    pub limits: crate::limit::EndpointPolicies,
}

/// The default `Cache-Control`: clients may store, but revalidate (with the
/// ETag) before each use.
pub const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

fn cache_control(r: Option<&crate::model::Resource>) -> HeaderValue {
    r.and_then(|r| r.cache_control.as_deref())
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or(NO_CACHE)
}

/// Module-wide settings a request needs.
#[derive(Debug, Default)]
pub struct ModuleInfo {
    pub prefix: String,
    pub versions: Vec<String>,
    pub convert_snake_case: bool,
    /// The module's own CORS settings (§10), over the global ones.
    pub cors: crate::model::ModuleCors,
    /// The credential kinds it accepts (§8.4); `None`: the default.
    pub credentials: Option<crate::model::Credentials>,
    /// For the documentation (§11).
    pub description: String,
}

impl ModuleInfo {
    /// What a request on `module`'s routes needs of it.
    pub fn of(module: &Module) -> ModuleInfo {
        ModuleInfo {
            prefix: module.prefix.clone(),
            versions: module.versions.clone(),
            convert_snake_case: module.convert_snake_case,
            cors: module.cors.clone(),
            credentials: module.credentials,
            description: module.description.clone(),
        }
    }
}

/// One path and everything served there.
pub struct Route {
    /// As declared: `/v1/books/{bookId}/reviews/{id}`.
    pub template: String,
    /// As registered with the router: `/v1/books/{p0}/reviews/{p1}`.
    pub router_path: String,
    /// Declared names of the positional parameters.
    pub param_names: Vec<String>,
    /// The last parameter is this route's own record id.
    pub record: bool,
    pub endpoints: Vec<Endpoint>,
    pub module: Arc<ModuleInfo>,
    /// `Allow` header value: every method served, HEAD and OPTIONS included.
    pub allow: HeaderValue,
    /// The template, shared with each response for the request log (made
    /// once here, not per request).
    pub log_name: Arc<str>,
}

impl Route {
    pub fn endpoint(&self, method: &Method) -> Option<&Endpoint> {
        let m = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.endpoints.iter().find(|e| e.method == *m)
    }

    pub fn allow_list(endpoints: &[Endpoint]) -> String {
        allow_list(endpoints.iter().map(|e| &e.method))
    }
}

/// An `Allow` value for routes serving `methods`: in a fixed order, HEAD
/// wherever GET is served, and OPTIONS always.
pub fn allow_list<'a>(methods: impl Iterator<Item = &'a Method> + Clone) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (m, name) in [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
    ] {
        let served = methods
            .clone()
            .any(|e| *e == m || (m == Method::HEAD && *e == Method::GET));
        if served {
            names.push(name);
        }
    }
    names.push("OPTIONS");
    names.join(", ")
}

fn verb_method(v: Verb) -> Method {
    match v {
        Verb::Get => Method::GET,
        Verb::Post => Method::POST,
        Verb::Put => Method::PUT,
        Verb::Patch => Method::PATCH,
        Verb::Delete => Method::DELETE,
    }
}

/// Builder state: routes by router path, in declaration order.
struct Table {
    routes: IndexMap<String, Route>,
}

impl Table {
    fn add(
        &mut self,
        module: &Arc<ModuleInfo>,
        template: String,
        router_path: String,
        param_names: Vec<String>,
        record: bool,
        endpoint: Endpoint,
    ) -> Result<(), String> {
        let route = self
            .routes
            .entry(router_path.clone())
            .or_insert_with(|| Route {
                log_name: Arc::from(template.as_str()),
                template: template.clone(),
                router_path,
                param_names,
                record,
                endpoints: Vec::new(),
                module: module.clone(),
                allow: HeaderValue::from_static("OPTIONS"),
            });
        if route.endpoints.iter().any(|e| e.method == endpoint.method) {
            return Err(format!("{} {template} is declared twice", endpoint.method));
        }
        route.endpoints.push(endpoint);
        Ok(())
    }
}

/// Collection path pieces of a resource: declared template, router path
/// (parameters renamed `{p0}`, `{p1}`, … so that sibling routes agree),
/// parameter names.
fn collection_paths(module: &Module, plan: &ResourcePlan) -> (String, String, Vec<String>) {
    let mut router_path = module.prefix.clone();
    for (i, res) in plan.chain.iter().enumerate() {
        router_path.push('/');
        router_path.push_str(&res.name);
        if i + 1 < plan.chain.len() {
            router_path.push_str(&format!("/{{p{i}}}"));
        }
    }
    (
        plan.collection_path.clone(),
        router_path,
        plan.parent_params.clone(),
    )
}

fn action_endpoint(
    action: &Action,
    registry: &Registry,
    controller: Option<Arc<dyn Controller>>,
    default_scope: &crate::model::Scopes,
    place: &str,
) -> Result<Endpoint, String> {
    let handler = registry
        .handler(&action.handler)
        .ok_or_else(|| format!("{place}: no handler is registered as '{}'", action.handler))?;
    let controller_resource = controller.as_ref().and_then(|c| c.resource().cloned());
    // The declaration's `input`, else the one a typed handler derives.
    let schema = match action.input.clone().or_else(|| handler.input_schema()) {
        Some(s) => Some(Arc::new(
            Schema::compile(s).map_err(|e| format!("{place}: {e}"))?,
        )),
        None => None,
    };
    let scope = action.scope.clone().unwrap_or_else(|| {
        if action.verb.is_write() {
            default_scope.write.clone()
        } else {
            default_scope.read.clone()
        }
    });
    Ok(Endpoint {
        method: verb_method(action.verb),
        target: Target::Action {
            action: Arc::new(action.clone()),
            handler,
            schema,
            controller,
        },
        scope,
        cache_control: cache_control(controller_resource.as_deref()),
        limits: Default::default(),
    })
}

/// One row of an API index: a place, its absolute link, what it is.
#[derive(Debug, Clone)]
struct IndexEntry {
    name: String,
    /// Path below the server's base URL.
    path: String,
    description: String,
}

/// The API's front door (`GET /`) and each module's (`GET /v1`): the
/// places below, with absolute links, in every format — a browser gets a
/// page of links to follow (the HTML encoder links http(s) URLs).
struct Index(Vec<IndexEntry>);

#[async_trait::async_trait]
impl ActionHandler for Index {
    async fn call(
        &self,
        cx: crate::controller::Ctx,
        _input: crate::controller::ActionInput,
    ) -> Result<crate::controller::Reply, crate::error::ApiError> {
        let rows: Vec<serde_json::Value> = self
            .0
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "href": format!("{}{}", cx.base_url, e.path),
                    "description": e.description,
                })
            })
            .collect();
        Ok(crate::controller::Reply::Value(serde_json::Value::Array(
            rows,
        )))
    }
}

/// Adds `GET /` (the modules, the reference and the document) and `GET
/// {prefix}` for each module (its top-level resources), public, unless
/// the declaration serves a GET there itself.
fn add_indexes(table: &mut Table, model: &ApiModel) {
    let index = |entries: Vec<IndexEntry>, summary: &str| Endpoint {
        method: Method::GET,
        target: Target::Action {
            action: Arc::new(Action {
                path: String::new(),
                verb: Verb::Get,
                level: ActionLevel::Module,
                handler: "restkit::index".into(),
                input: None,
                scope: Some(String::new()),
                summary: summary.into(),
                description: String::new(),
                rate_limit: Default::default(),
            }),
            handler: Arc::new(Index(entries)),
            schema: None,
            controller: None,
        },
        scope: String::new(),
        cache_control: NO_CACHE,
        limits: Default::default(),
    };
    let free = |table: &Table, path: &str| {
        table
            .routes
            .get(path)
            .is_none_or(|r| r.endpoint(&Method::GET).is_none())
    };
    // Modules sharing a prefix share one index (a prefix is never empty or
    // `/`: the model refuses it).
    let mut by_prefix: IndexMap<String, (Arc<ModuleInfo>, Vec<IndexEntry>)> = IndexMap::new();
    for module in &model.modules {
        let (_, entries) = by_prefix
            .entry(module.prefix.clone())
            .or_insert_with(|| (Arc::new(ModuleInfo::of(module)), Vec::new()));
        for r in module.resources.iter().filter(|r| r.parent.is_none()) {
            entries.push(IndexEntry {
                name: r.name.clone(),
                path: format!("{}/{}", module.prefix, r.name),
                description: r.description.clone(),
            });
        }
    }
    let mut top = Vec::new();
    for (prefix, (info, entries)) in by_prefix {
        top.push(IndexEntry {
            name: prefix.clone(),
            path: prefix.clone(),
            description: info.description.clone(),
        });
        if free(table, &prefix) {
            let ep = index(entries, "The resources of this module, with links.");
            // A path no declaration takes: the add cannot collide.
            let _ = table.add(&info, prefix.clone(), prefix, Vec::new(), false, ep);
        }
    }
    top.push(IndexEntry {
        name: "docs".into(),
        path: "/docs".into(),
        description: "The reference of every operation, as a page.".into(),
    });
    top.push(IndexEntry {
        name: "openapi".into(),
        path: "/openapi.json".into(),
        description: "The OpenAPI 3.1 document.".into(),
    });
    if free(table, "/") {
        let root = Arc::new(ModuleInfo::default());
        let ep = index(top, "The API's modules, with links.");
        let _ = table.add(&root, "/".into(), "/".into(), Vec::new(), false, ep);
    }
}

/// Derives every route of `model`.
pub fn build(
    model: &ApiModel,
    registry: &Registry,
    options: &TableOptions,
) -> Result<Vec<Route>, String> {
    let mut table = Table {
        routes: IndexMap::new(),
    };
    for module in &model.modules {
        let info = Arc::new(ModuleInfo::of(module));
        for r in &module.resources {
            let place = format!("{} resource '{}'", module.prefix, r.name);
            let plan = module.plan(r);
            let controller: Arc<dyn Controller> = match &r.controller {
                Some(name) => registry
                    .find_controller(name)
                    .ok_or_else(|| format!("{place}: no controller is registered as '{name}'"))?,
                None => Arc::new(
                    TableController::new(model, module, &plan, options)
                        .map_err(|e| format!("{place}: {e}"))?,
                ),
            };
            let (ctemplate, cpath, cnames) = collection_paths(module, &plan);
            let id_param = format!("{{p{}}}", cnames.len());
            let rpath = format!("{cpath}/{id_param}");
            let rtemplate = format!("{ctemplate}/{{id}}");
            let mut rnames = cnames.clone();
            rnames.push("id".to_string());
            for op in controller.operations() {
                let scope = if op.is_write() {
                    &r.scopes.write
                } else {
                    &r.scopes.read
                };
                let ep = Endpoint {
                    method: op.method(),
                    target: Target::Operation {
                        controller: controller.clone(),
                        op,
                    },
                    scope: scope.clone(),
                    cache_control: cache_control(Some(r)),
                    limits: Default::default(),
                };
                if op.on_record() {
                    table.add(
                        &info,
                        rtemplate.clone(),
                        rpath.clone(),
                        rnames.clone(),
                        true,
                        ep,
                    )?;
                } else {
                    table.add(
                        &info,
                        ctemplate.clone(),
                        cpath.clone(),
                        cnames.clone(),
                        false,
                        ep,
                    )?;
                }
            }
            for action in &r.actions {
                let ep = action_endpoint(
                    action,
                    registry,
                    Some(controller.clone()),
                    &r.scopes,
                    &place,
                )?;
                match action.level {
                    ActionLevel::Record => table.add(
                        &info,
                        format!("{rtemplate}/{}", action.path),
                        format!("{rpath}/{}", action.path),
                        rnames.clone(),
                        true,
                        ep,
                    )?,
                    _ => table.add(
                        &info,
                        format!("{ctemplate}/{}", action.path),
                        format!("{cpath}/{}", action.path),
                        cnames.clone(),
                        false,
                        ep,
                    )?,
                }
            }
        }
        for action in &module.actions {
            let place = format!("{} action '{}'", module.prefix, action.path);
            let ep = action_endpoint(action, registry, None, &Default::default(), &place)?;
            let path = format!("{}{}", module.prefix, action.path);
            table.add(&info, path.clone(), path, Vec::new(), false, ep)?;
        }
    }
    add_indexes(&mut table, model);
    let mut routes: Vec<Route> = table.routes.into_values().collect();
    for r in &mut routes {
        r.allow =
            HeaderValue::from_str(&Route::allow_list(&r.endpoints)).map_err(|e| e.to_string())?;
    }
    Ok(routes)
}

/// The route table as text for `restkit routes`: method, path, handler,
/// scope; restkit's own routes first.
pub fn table_text<R: std::borrow::Borrow<Route>>(
    routes: &[R],
    own: &super::own::OwnRoutes,
) -> String {
    let mut rows = vec![(
        "METHOD".to_string(),
        "PATH".to_string(),
        "HANDLER".to_string(),
        "SCOPE".to_string(),
    )];
    for (route, path) in own.iter() {
        for method in route.methods() {
            rows.push((
                method.to_string(),
                path.to_string(),
                route.handler().to_string(),
                "-".into(),
            ));
        }
    }
    for r in routes.iter().map(R::borrow) {
        for e in &r.endpoints {
            let handler = match &e.target {
                Target::Operation { controller, op } => match controller.resource() {
                    Some(res) => format!("{}::{op:?}", res.name),
                    None => format!("controller::{op:?}"),
                },
                Target::Action { action, .. } => action.handler.clone(),
            };
            let scope = if e.scope.is_empty() {
                "(public)".to_string()
            } else {
                e.scope.clone()
            };
            rows.push((e.method.to_string(), r.template.clone(), handler, scope));
        }
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(m, p, h, s)| format!("{m:w0$}  {p:w1$}  {h:w2$}  {s}\n"))
        .collect()
}
pub fn allow_header(route: &Route) -> (header::HeaderName, HeaderValue) {
    (header::ALLOW, route.allow.clone())
}
