//! Marks the pipeline's steps leave on requests and responses for one
//! another (in their extensions): what was routed, who called, how an
//! OAuth2 endpoint failed. Plain data, so the steps that write a mark and
//! the edge that reads it need not know each other.

use std::sync::Arc;

/// The route template that served a request; the edge layer logs it.
#[derive(Clone, Debug)]
pub struct RouteTemplate(pub Arc<str>);

/// Marks a HEAD request that runs inside the pipeline as a GET.
#[derive(Clone, Copy, Debug)]
pub struct Head;

/// Who made a request, for the request log: `u:1`, `c:spa` or `ip:…`
/// (never a credential).
#[derive(Clone, Debug)]
pub struct LoggedCaller(pub Arc<str>);

/// The RFC 6749 error an OAuth2 endpoint answered with, for the metrics'
/// auth failures by kind (the edge reads it as it reads an `ApiError`).
#[derive(Clone, Copy, Debug)]
pub struct OAuthFailure(pub &'static str);

/// Marks a request that asked for a live feed (`text/event-stream`,
/// `type=events` or `.events`, §16); its errors are JSON.
#[derive(Clone, Copy, Debug)]
pub struct Live;
