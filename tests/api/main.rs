//! Integration tests: one source, built twice (Cargo.toml): `api` runs
//! on SQLite, `api_pg` on PostgreSQL ([`db`]). Each test builds its own
//! app over a fresh database ([`helpers::TestApp`]) and drives it
//! in-process through the whole pipeline, or over a real socket where the
//! network matters.

mod actions;
mod browser;
mod caching;
mod cli;
mod clients_lib;
mod contract;
mod controller;
mod cors;
mod crud;
mod db;
mod docs;
mod errors;
mod evolution;
mod faults;
mod formats;
mod fuzz;
mod generated_clients;
mod helpers;
mod integrity;
mod limits;
mod live;
mod nested;
mod oauth;
mod ops;
mod pipeline;
mod plans;
mod query;
mod rate_limits;
mod refusals;
mod relations;
mod scale_out;
mod server;
mod sync;
mod types;
mod versions;
mod writes;
