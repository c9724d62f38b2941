//! An API embedded in a program, in one call: settings and the model built
//! in code, one resource, one custom action, served as `restkit serve`
//! serves (request log, limits, timeouts, graceful stop on SIGINT/SIGTERM).
//!
//!   cargo run --example embedded
//!   curl -s localhost:8080/api/notes
//!   curl -s -X POST localhost:8080/api/notes -H 'content-type: application/json' -d '{"text":"hi"}'
//!   curl -s -X POST localhost:8080/api/notes/shout -H 'content-type: application/json' -d '{"text":"hi","times":3}'
//!
//! The README's "Embedding" section shows this file.

use restkit::config::{Overrides, Settings};
use restkit::controller::ActionInput;
use restkit::model::builder::{Action, ActionLevel, ApiModel, Field, Module, Resource, Verb};
use restkit::model::FieldType;
use restkit::registry::Registry;
use restkit::{ApiError, Ctx, Reply};
use serde_json::json;

/// `POST /api/notes/shout`: `text` in capitals, `times` times. restkit
/// has already checked the input against the action's schema (a 422 per
/// failed constraint otherwise), so the handler reads it as it is.
async fn shout(_cx: Ctx, input: ActionInput) -> Result<Reply, ApiError> {
    let text = input.params["text"].as_str().unwrap_or("").to_uppercase();
    let times = input.params["times"].as_u64().unwrap_or(1) as usize;
    Reply::json(&json!({ "shout": vec![text; times].join(" ") }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Settings from TOML text (or a file, or RESTKIT_* variables): the
    // same keys as `restkit.toml`.
    let settings = Settings::load(
        r#"
        [server]
        bind = "127.0.0.1:8080"
        [database]
        url = "sqlite:notes.db"
        "#,
        &Overrides::default(),
    )?;
    let _log = restkit::init_logging(&settings.log);

    let model = ApiModel::builder()
        .module(
            Module::new("/api").resource(
                Resource::new("notes", "notes")
                    .scopes("", "") // public: no token needed
                    .field(Field::new("id", FieldType::Integer).primary_key())
                    .field(
                        Field::new("text", FieldType::String)
                            .required()
                            .min_length(1)
                            .max_length(500),
                    )
                    .field(
                        Field::new("mood", FieldType::String)
                            .one_of(["calm", "loud"])
                            .default_value("calm"),
                    )
                    .with_action(
                        Action::new(ActionLevel::Collection, Verb::Post, "shout", "notes::shout")
                            .summary("A text in capitals.")
                            .input(json!({
                                "type": "object",
                                "required": ["text"],
                                "properties": {
                                    "text": {"type": "string", "maxLength": 100},
                                    "times": {"type": "integer", "minimum": 1, "maximum": 5}
                                },
                                "additionalProperties": false
                            })),
                    ),
            ),
        )
        .build()?;

    let mut registry = Registry::builtin();
    registry.handle_fn("notes::shout", shout);
    restkit::serve(model, settings, &registry).await?;
    Ok(())
}
