//! Built-in action handlers that declarations can name (§3, §4.3).
//!
//! - `echo`: returns its validated, coerced parameters (Tagged/Rest's
//!   showParams); the schema in the declaration decides the types.
//! - `users::me`: the caller's id, username and scopes.
//! - `library::borrow`: the demo's resource action on a book.

use chrono::{Duration, Utc};
use serde_json::json;

use crate::controller::{ActionInput, Ctx, Reply};
use crate::error::ApiError;
/// `echo`.
pub async fn echo(_cx: Ctx, input: ActionInput) -> Result<Reply, ApiError> {
    Ok(Reply::Value(input.params))
}

/// `users::me`.
pub async fn me(cx: Ctx, _input: ActionInput) -> Result<Reply, ApiError> {
    let Some(who) = &cx.identity else {
        return Err(ApiError::unauthorized("Sign in to see who you are."));
    };
    Reply::json(&json!({
        "id": who.user_id,
        "username": who.username,
        "client_id": who.client_id,
        "scopes": who.scopes,
    }))
}

/// `POST /v1/books/{id}/borrow`: the book exists (the dispatcher fetched it
/// within scope); the caller borrows it for 14 days.
pub async fn borrow(cx: Ctx, input: ActionInput) -> Result<Reply, ApiError> {
    let user = cx.require_user()?;
    let id = input
        .id
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ApiError::not_found("book", input.id.as_deref().unwrap_or("")))?;
    let due = (Utc::now() + Duration::days(14))
        .format("%Y-%m-%d")
        .to_string();
    Reply::json(&json!({"book_id": id, "borrowed_by": user, "due": due}))
}
