//! From a matched route to a response (§4.1): the pipeline's steps after
//! routing — version, identity, OPTIONS, method, authorization,
//! parameters and body, controller, representation — then encoding in the
//! negotiated format.
//!
//! Everything here is per request; everything it consults (routes, allow
//! lists, schemas) was built at start-up.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, Request, StatusCode};
use serde_json::Value;

use super::marks::RouteTemplate;
use super::routes::{Endpoint, Route, Target};
use super::{body, negotiate, represent, AppState};
use crate::auth;
use crate::controller::{ActionInput, Ctx, Operation, Reply};
use crate::error::ApiError;
use crate::format::html::Page;
use crate::format::{self, Format, Representation};
use crate::validate;

/// Longest query string accepted (§6.9): past it, 414.
const MAX_QUERY: usize = 8 * 1024;

pub const API_VERSION: http::HeaderName = http::HeaderName::from_static("api-version");

/// Routing has matched `route`; runs the remaining steps and encodes the
/// result in the negotiated format.
pub async fn handle(route: Arc<Route>, state: Arc<AppState>, req: Request<Body>) -> Response {
    let template = RouteTemplate(route.log_name.clone());
    let format = req
        .extensions()
        .get::<Format>()
        .copied()
        .unwrap_or_default();
    let page = req
        .extensions()
        .get::<Page>()
        .map(|p| page_for(p.clone(), &route, state.settings.live.enabled));
    let head = req.extensions().get::<super::marks::Head>().is_some();
    // Conditional reads (§5.6): only GET and HEAD are tagged and may be
    // answered 304.
    let read = head || req.method() == Method::GET;
    let if_none_match: Vec<HeaderValue> = if read {
        req.headers()
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let if_modified_since = if read {
        req.headers().get(header::IF_MODIFIED_SINCE).cloned()
    } else {
        None
    };
    let cache_control = route
        .endpoint(req.method())
        .map(|e| e.cache_control.clone());
    // The version step first: its answer goes on every response of the
    // route, successes and errors alike.
    let version = match negotiate::version(req.headers(), &route.module.versions) {
        Ok(v) => v,
        Err(e) => {
            let mut res = e.into_response();
            res.extensions_mut().insert(template);
            res.extensions_mut().insert(route.module.clone());
            return res;
        }
    };
    let mut limited = None;
    let ip = req
        .extensions()
        .get::<crate::limit::ClientIp>()
        .map(|c| c.0);
    let mut res = match steps(&route, &state, req, version.as_deref(), &mut limited).await {
        // A live feed: its own head, never tagged or 304.
        Ok(Answer::Stream(res)) => res,
        Ok(Answer::Represented(repr)) => {
            let mut res = format::encode(repr, format, read, page.as_ref().unwrap_or(&NO_PAGE));
            if read && res.status() == StatusCode::OK {
                if let Some(cc) = cache_control {
                    res.headers_mut().entry(header::CACHE_CONTROL).or_insert(cc);
                }
                let current: Vec<HeaderValue> = res
                    .headers()
                    .get(header::ETAG)
                    .cloned()
                    .into_iter()
                    .collect();
                // If-None-Match wins; If-Modified-Since counts only
                // without it (RFC 9110 §13.1.3).
                let unchanged = if if_none_match.is_empty() {
                    unmodified_since(if_modified_since.as_ref(), res.headers())
                } else {
                    format::tags_match(if_none_match.iter(), &current, false)
                };
                if unchanged {
                    not_modified(&mut res);
                }
            }
            res
        }
        Err(e) => e.into_response(),
    };
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&v).ok()) {
        res.headers_mut().insert(API_VERSION, v);
    }
    if let Some((d, who)) = limited {
        if let Some(d) = d {
            d.write_headers(res.headers_mut());
        }
        let who = match who {
            Some(w) => w.key(),
            None => ip
                .map(|ip| format!("ip:{ip}"))
                .unwrap_or_else(|| "-".into()),
        };
        res.extensions_mut()
            .insert(super::marks::LoggedCaller(Arc::from(who)));
    }
    res.extensions_mut().insert(template);
    // The CORS layer answers with the module's settings.
    res.extensions_mut().insert(route.module.clone());
    res
}

static NO_PAGE: Page = Page {
    method: String::new(),
    target: String::new(),
    methods: Vec::new(),
    template: None,
    input: None,
    account: None,
    live: false,
};

/// An HTML page's form offers the route's methods, and a body with the
/// fields a write takes (a create's on a collection, a replacement's on a
/// record: the form then keeps only those of the record it shows).
fn page_for(mut page: Page, route: &Route, live: bool) -> Page {
    page.methods = route
        .endpoints
        .iter()
        .map(|e| e.method.to_string())
        .collect();
    let write = [Method::POST, Method::PUT, Method::PATCH]
        .iter()
        .find_map(|m| route.endpoint(m));
    let input = write.and_then(|e| match &e.target {
        Target::Operation { controller, op } => controller.input_schema(*op).cloned(),
        Target::Action {
            schema: Some(s), ..
        } => Some(s.source.clone()),
        Target::Action { .. } => None,
    });
    page.template = input.as_ref().map(crate::validate::example_body);
    page.input = input;
    page.live = live
        && route
            .endpoint(&Method::GET)
            .is_some_and(|e| match &e.target {
                Target::Operation { controller, op } => *op == Operation::Find && controller.live(),
                Target::Action { .. } => false,
            });
    page
}

/// restkit's own read parameters (§5–§6): each takes one value.
const RESERVED: &[&str] = &[
    "fields",
    "expand",
    "sort",
    "q",
    "filter",
    "page",
    "per-page",
    "limit",
    "offset",
    "cursor",
    "timestamp",
    "sync_mark",
    "all",
];

/// The reserved parameters that are lists of names: `sort=a&sort=-b`
/// (how OpenAPI's default `style: form, explode: true` sends an array, and
/// so what generated clients send) means `sort=a,-b`.
const LISTS: &[&str] = &["fields", "expand", "sort"];

/// A repeated restkit parameter is refused rather than silently resolved
/// (which of two cursors was meant?), except the lists, whose repeats are
/// joined in order; `envelope` and `type` hold on every route, actions
/// included, and `envelope` takes only a boolean. Action parameters with
/// other names are the action's own business.
fn check_reserved(
    query: &mut Vec<(String, String)>,
    op: Option<crate::controller::Operation>,
) -> Result<(), ApiError> {
    let operation = op.is_some();
    // Where each reserved name first appeared.
    let mut seen: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < query.len() {
        let k = query[i].0.as_str();
        let own = k == "envelope" || k == "type" || (operation && RESERVED.contains(&k));
        if !own {
            i += 1;
            continue;
        }
        if let Some(&first) = seen.iter().find(|&&j| query[j].0 == k) {
            if !(operation && LISTS.contains(&k)) {
                return Err(ApiError::bad_query(format!(
                    "'{k}' is given more than once."
                )));
            }
            let (_, more) = query.remove(i);
            let joined = format!(
                "{},{}",
                unparenthesized(&query[first].1),
                unparenthesized(&more)
            );
            query[first].1 = joined;
            continue;
        }
        if k == "envelope" && !matches!(query[i].1.as_str(), "true" | "false" | "1" | "0") {
            return Err(ApiError::bad_query("'envelope' is true or false."));
        }
        // `all=true` confirms deleting a whole collection; anywhere else
        // it would be silently ignored, and a client that sent it on a GET
        // believing it lifts the page size would never learn otherwise.
        if k == "all" && op != Some(crate::controller::Operation::DeleteAll) {
            return Err(ApiError::bad_query(
                "'all' confirms a DELETE of the whole collection; it means nothing here \
                 (a page holds at most the maximum page size: follow the Link header).",
            ));
        }
        seen.push(i);
        i += 1;
    }
    Ok(())
}

/// `(a,b)` → `a,b`; anything else as it is.
fn unparenthesized(list: &str) -> &str {
    list.strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or(list)
}

/// The pipeline after routing and version, one named step after another:
/// request size → identity → OPTIONS → method → authorization →
/// parameters and body → controller → representation.
async fn steps(
    route: &Route,
    state: &AppState,
    req: Request<Body>,
    version: Option<&str>,
    limited: &mut Option<(Option<crate::limit::Decision>, Option<crate::limit::Who>)>,
) -> Result<Answer, ApiError> {
    let (mut parts, body) = req.into_parts();
    let live = parts.extensions.get::<super::marks::Live>().is_some();
    let method = parts.method.clone();
    let raw_query = parts.uri.query().unwrap_or("");
    if raw_query.len() > MAX_QUERY {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            format!("The query string is longer than {MAX_QUERY} bytes."),
        ));
    }
    let accepted = route
        .module
        .credentials
        .unwrap_or_else(|| auth::default_credentials(state.settings.auth.query_param_token));
    // Rate limits (§9), before any work: the endpoint's policies, or the
    // global ones for OPTIONS and methods the route does not serve.
    let global;
    let policies = match route.endpoint(&method) {
        Some(e) if method != Method::OPTIONS => &e.limits,
        _ => {
            global = state.limiter.global();
            &global
        }
    };
    let ip = parts
        .extensions
        .get::<crate::limit::ClientIp>()
        .map(|c| c.0);
    // A password that must really be hashed is first charged to the
    // client IP's anonymous allowance.
    let gate = super::limits::PasswordAttempts {
        limiter: &state.limiter,
        policies,
        ip,
    };
    let caller = auth::identify(
        &parts,
        &state.store,
        &state.tokens,
        accepted,
        &gate,
        &state.settings.server.public_url,
    )
    .await;
    let known = super::limits::known(&caller);
    // Whose live feeds count together: the user or client, else the IP.
    let follower = known
        .as_ref()
        .map(|w| w.key())
        .or_else(|| ip.map(|ip| format!("ip:{ip}")))
        .unwrap_or_else(|| "-".into());
    let decision = state.limiter.decide(policies, known.clone(), ip).await;
    let refusal = match &decision {
        Ok(Some(d)) if !d.allowed => Some(d.refusal()),
        Err(e) => Some(e.clone()),
        _ => None,
    };
    *limited = Some((decision.ok().flatten(), known));
    if let Some(e) = refusal {
        return Err(e);
    }
    if method == Method::OPTIONS {
        let description = state.descriptions.get(&route.template);
        return Ok(Answer::Represented(represent::options(route, description)));
    }
    let Some(endpoint) = route.endpoint(&method) else {
        return Err(ApiError::method_not_allowed(
            route.allow.to_str().unwrap_or("OPTIONS"),
        ));
    };
    let identity = caller.into_identity()?;
    auth::scopes::authorize(&endpoint.scope, identity.as_ref(), &accepted)?;
    // A write answers with the record only to a caller that may read it:
    // a `write`-only token gets 204 (201 with Location), as if it had
    // sent `Prefer: return=minimal`.
    let may_read = match &endpoint.target {
        Target::Operation { controller, .. } => controller
            .resource()
            .is_none_or(|r| auth::scopes::holds(&r.scopes.read, identity.as_ref())),
        Target::Action { .. } => true,
    };
    let mut query: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let op = match &endpoint.target {
        Target::Operation { op, .. } => Some(*op),
        Target::Action { .. } => None,
    };
    check_reserved(&mut query, op)?;
    let raw = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| ApiError::route_not_found(parts.uri.path()))?;
    let mut params: Vec<(String, String)> = route
        .param_names
        .iter()
        .cloned()
        .zip(raw.iter().map(|(_, v)| v.to_string()))
        .collect();
    let record_id = if route.record {
        params.pop().map(|(_, v)| v)
    } else {
        None
    };
    // The credential a live feed checks again as it goes: only one that
    // authenticated this request (a stale session cookie was ignored by
    // identity and must not end the stream later).
    let credential = if !live {
        None
    } else if let Some(key) = parts
        .headers
        .get(auth::api_keys::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        // The request passed identity, so this key is what authenticated it.
        let ip = parts
            .extensions
            .get::<crate::limit::ClientIp>()
            .map(|c| c.0);
        Some(super::live::Credential::ApiKey(key.to_string(), ip))
    } else {
        match auth::bearer_token(&parts, &state.settings.server.public_url) {
            Some(token) if state.tokens.verify(&token, &state.store).await.is_ok() => {
                Some(super::live::Credential::Bearer(token))
            }
            _ => None,
        }
    };
    let cx = Ctx {
        identity,
        params,
        query,
        base_url: state.base_url(&parts.headers),
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        store: state.store.clone(),
        convert_snake_case: route.module.convert_snake_case,
        version: version.map(str::to_string),
    };
    let reply = match &endpoint.target {
        Target::Operation { controller, op } => {
            let id = record_id.as_deref().unwrap_or("");
            let input = if op.takes_body() {
                let parsed = body::read(body, &cx.headers, &state.settings.server).await?;
                let mut value = parsed.value;
                if let Some(schema) = controller.input_schema(*op) {
                    // Form bodies carry strings; the declared types convert them.
                    if parsed.form {
                        validate::coerce(&mut value, schema);
                    }
                    super::exact_numbers::refuse_in_integers(&parsed.lost_fractions, schema)?;
                }
                value
            } else {
                Value::Null
            };
            if live {
                return follow(state, controller, *op, cx, record_id, &follower, credential).await;
            }
            match op {
                Operation::Find => controller.find(&cx).await?,
                Operation::Fetch => controller.fetch(&cx, id).await?,
                Operation::Create => controller.create(&cx, input).await?,
                Operation::Update => controller.update(&cx, id, input).await?,
                Operation::Patch => controller.patch(&cx, id, input).await?,
                Operation::Delete => controller.delete(&cx, id).await?,
                Operation::BulkUpdate => controller.bulk_update(&cx, input).await?,
                Operation::DeleteAll => controller.delete_all(&cx).await?,
            }
        }
        Target::Action { .. } => run_action(endpoint, &cx, record_id, body, state).await?,
    };
    Ok(Answer::Represented(represent::reply(
        reply, &cx, &method, may_read,
    )))
}

/// What the steps answer: a representation to encode, or a live feed.
enum Answer {
    Represented(Representation),
    Stream(axum::response::Response),
}

/// A GET that asked for `text/event-stream` (§16): the collection's or
/// record's live feed, where the controller keeps one.
async fn follow(
    state: &AppState,
    controller: &Arc<dyn crate::controller::Controller>,
    op: Operation,
    cx: Ctx,
    id: Option<String>,
    follower: &str,
    credential: Option<super::live::Credential>,
) -> Result<Answer, ApiError> {
    let followable = matches!(op, Operation::Find | Operation::Fetch)
        && controller.live()
        && state.settings.live.enabled;
    if !followable {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "This route has no live feed (text/event-stream): only collections and records \
             of sync resources can be followed.",
        ));
    }
    let slot = state.live.open(follower)?;
    let res = super::live::follow(super::live::Follow {
        controller: controller.clone(),
        cx,
        id,
        slot,
        credential,
        tokens: state.tokens.clone(),
    })
    .await?;
    Ok(Answer::Stream(res))
}

async fn run_action(
    endpoint: &Endpoint,
    cx: &Ctx,
    id: Option<String>,
    body: Body,
    state: &AppState,
) -> Result<Reply, ApiError> {
    let Target::Action {
        handler,
        schema,
        controller,
        ..
    } = &endpoint.target
    else {
        unreachable!("run_action is called for actions only");
    };
    // A record action runs on a record that exists for this caller.
    if let (Some(id), Some(c)) = (&id, controller) {
        if c.operations().contains(&Operation::Fetch) {
            c.fetch(cx, id).await?;
        }
    }
    let mut params = crate::query::brackets::nest(cx.query.iter().cloned())?;
    if endpoint.method != Method::GET {
        let parsed = body::read(body, &cx.headers, &state.settings.server).await?;
        if !parsed.value.is_object() {
            return Err(ApiError::bad_body("An action's body must be an object."));
        }
        if let Some(schema) = schema {
            super::exact_numbers::refuse_in_integers(&parsed.lost_fractions, &schema.source)?;
        }
        crate::query::brackets::deep_merge(&mut params, parsed.value);
    }
    if let Some(schema) = schema {
        validate::coerce(&mut params, &schema.source);
        schema.check(&params)?;
    }
    handler
        .call(
            cx.clone(),
            ActionInput {
                params,
                id,
                resource: controller.as_ref().and_then(|c| c.resource().cloned()),
            },
        )
        .await
}

/// Was the representation (its `Last-Modified`, whole seconds) last changed
/// at or before the client's `If-Modified-Since`? The date may be in any
/// of HTTP's three forms; an unparsable one is ignored, as RFC 9110 asks.
fn unmodified_since(since: Option<&HeaderValue>, headers: &http::HeaderMap) -> bool {
    let parse = |v: &HeaderValue| v.to_str().ok().and_then(super::date::parse);
    // Without the request header there is nothing to compare: the
    // response's own date is not parsed.
    let Some(since) = since.and_then(parse) else {
        return false;
    };
    headers
        .get(header::LAST_MODIFIED)
        .and_then(parse)
        .is_some_and(|modified| modified <= since)
}

/// 304 Not Modified: the same headers (ETag, Cache-Control, …) and, in
/// the end, no body. The body travels on until compression has chosen the
/// coding the 200 would have had, so the 304's ETag names that coding as
/// the 200's did ([`super::layers::not_modified_body`] drops it then).
fn not_modified(res: &mut Response) {
    *res.status_mut() = StatusCode::NOT_MODIFIED;
}

/// 404 for paths no route matches.
/// An unknown path. Counted per client IP in the global `anonymous` tier
/// (whatever credentials came with it: a path no route serves identifies
/// no one): guessing at paths is refused like any anonymous flood, and its
/// 429s are summarised in the log instead of written one line each.
pub async fn not_found(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: Request<Body>,
) -> Response {
    let ip = req
        .extensions()
        .get::<crate::limit::ClientIp>()
        .map(|c| c.0);
    let decision = state
        .limiter
        .decide(&state.limiter.global(), None, ip)
        .await;
    let mut res = match &decision {
        Ok(Some(d)) if !d.allowed => d.refusal().into_response(),
        Err(e) => e.clone().into_response(),
        _ => ApiError::route_not_found(req.uri().path()).into_response(),
    };
    if let Ok(Some(d)) = &decision {
        d.write_headers(res.headers_mut());
    }
    let who = ip.map_or_else(|| "-".into(), |ip| format!("ip:{ip}"));
    res.extensions_mut()
        .insert(super::marks::LoggedCaller(Arc::from(who)));
    res.extensions_mut()
        .insert(RouteTemplate(Arc::from("(unmatched)")));
    res
}
