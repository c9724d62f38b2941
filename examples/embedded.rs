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
use restkit::model::builder::{Action, ActionLevel, ApiModel, Field, Module, Resource, Verb};
use restkit::model::FieldType;
use restkit::registry::Registry;
use restkit::{ApiError, Ctx};

/// What `POST /api/notes/shout` takes: its JSON Schema, derived from this
/// type, validates each request (a 422 per failed constraint) and
/// documents the action in OpenAPI.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ShoutInput {
    #[schemars(length(min = 1, max = 100))]
    text: String,
    #[schemars(range(min = 1, max = 5))]
    times: Option<u8>,
}

/// What it answers (also in OpenAPI).
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Shout {
    shout: String,
}

/// `text` in capitals, `times` times.
async fn shout(_cx: Ctx, input: ShoutInput) -> Result<Shout, ApiError> {
    let loud = input.text.to_uppercase();
    let times = usize::from(input.times.unwrap_or(1));
    Ok(Shout {
        shout: vec![loud; times].join(" "),
    })
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
                            .summary("A text in capitals."),
                    ),
            ),
        )
        .build()?;

    let mut registry = Registry::builtin();
    registry.handle_typed("notes::shout", shout);
    restkit::serve(model, settings, &registry).await?;
    Ok(())
}
