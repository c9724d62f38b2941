//! The generated documentation (§11): the OpenAPI document
//! ([`openapi`]), made once at start-up from the routes the server
//! serves, and the HTML reference at `/docs` ([`page`]) rendered from it.

pub mod openapi;
pub mod page;
