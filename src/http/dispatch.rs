//! From a matched route to a response: method → endpoint, identity, path
//! and query parameters, body, controller call, rendering (§4.1).
//!
//! Everything here is per request; everything it consults (routes, allow
//! lists, schemas) was built at start-up.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, Request, StatusCode};
use serde_json::Value;

use super::body;
use super::render;
use super::routes::{Endpoint, Route, Target};
use super::AppState;
use crate::auth::{self, Identity};
use crate::controller::{ActionInput, Ctx, Operation, Reply};
use crate::error::ApiError;
use crate::validate;

/// The route template that served a request; the edge layer logs it.
#[derive(Clone, Debug)]
pub struct RouteTemplate(pub Arc<str>);

/// Longest query string accepted (§6.9): past it, 414.
const MAX_QUERY: usize = 8 * 1024;

pub const API_VERSION: http::HeaderName = http::HeaderName::from_static("api-version");

pub async fn handle(route: Arc<Route>, state: Arc<AppState>, req: Request<Body>) -> Response {
    let template = RouteTemplate(Arc::from(route.template.as_str()));
    let version = negotiate_version(req.headers(), &route.module.versions);
    let mut res = match version {
        Ok(v) => {
            let mut res = match serve(&route, &state, req, v.clone()).await {
                Ok(res) => res,
                Err(e) => e.into_response(),
            };
            if let Some(v) = v.and_then(|v| HeaderValue::from_str(&v).ok()) {
                res.headers_mut().insert(API_VERSION, v);
            }
            res
        }
        Err(e) => e.into_response(),
    };
    res.extensions_mut().insert(template);
    res
}

/// The minor version the client asked for (§4.5): `Accept: …; version=1.1`
/// or `Accept: application/vnd.restkit.v1.1+json`; without one, the
/// module's latest. A version the module does not list is 406.
pub fn negotiate_version(
    headers: &http::HeaderMap,
    offered: &[String],
) -> Result<Option<String>, ApiError> {
    if offered.is_empty() {
        return Ok(None);
    }
    let mut asked = None;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for range in text.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let mime = parts.next().unwrap_or("");
            if let Some(v) = mime
                .strip_prefix("application/vnd.restkit.v")
                .and_then(|m| m.split('+').next())
            {
                asked = Some(v.to_string());
            }
            for p in parts {
                if let Some(v) = p.strip_prefix("version=") {
                    asked = Some(v.trim_matches('"').to_string());
                }
            }
        }
    }
    match asked {
        None => Ok(offered.last().cloned()),
        Some(v) if offered.contains(&v) => Ok(Some(v)),
        Some(v) => Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            format!(
                "Version {v} is not offered here; this API offers {}.",
                offered.join(", ")
            ),
        )),
    }
}

async fn serve(
    route: &Route,
    state: &AppState,
    req: Request<Body>,
    version: Option<String>,
) -> Result<Response, ApiError> {
    let method = req.method().clone();
    if method == Method::OPTIONS {
        return Ok(render::options(route));
    }
    let Some(endpoint) = route.endpoint(&method) else {
        return Err(ApiError::method_not_allowed(
            route.allow.to_str().unwrap_or("OPTIONS"),
        ));
    };
    let (mut parts, body) = req.into_parts();
    let raw_query = parts.uri.query().unwrap_or("");
    if raw_query.len() > MAX_QUERY {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            format!("The query string is longer than {MAX_QUERY} bytes."),
        ));
    }
    let query: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let identity = match parts.extensions.get::<Identity>() {
        Some(id) => Some(id.clone()),
        None => auth::authenticate(&parts.headers, &state.store).await?,
    };
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
    let cx = Ctx {
        identity,
        params,
        query,
        base_url: state.base_url(&parts.headers),
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        store: state.store.clone(),
        convert_snake_case: route.module.convert_snake_case,
        version,
    };
    let reply = match &endpoint.target {
        Target::Operation { controller, op } => {
            let id = record_id.as_deref().unwrap_or("");
            let input = if op.takes_body() {
                let parsed = body::read(body, &cx.headers, &state.settings.server).await?;
                let mut value = parsed.value;
                // Form bodies carry strings; the declared types convert them.
                if parsed.form {
                    if let Some(schema) = controller.input_schema(*op) {
                        validate::coerce(&mut value, schema);
                    }
                }
                value
            } else {
                Value::Null
            };
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
    Ok(render::reply(reply, &cx, &method, state))
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

/// 404 for paths no route matches.
pub async fn not_found(req: Request<Body>) -> Response {
    let mut res = ApiError::route_not_found(req.uri().path()).into_response();
    res.extensions_mut()
        .insert(RouteTemplate(Arc::from("(unmatched)")));
    res
}
