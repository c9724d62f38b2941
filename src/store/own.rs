//! restkit's own tables — users and sync tombstones — declared as models
//! like any resource, so the same migration code creates them. (The change
//! clock is one row of restkit's own DDL, in `migrate`.)

use std::sync::{Arc, OnceLock};

use super::sql::TOMBSTONES;
use crate::model::builder::*;
use crate::model::FieldType;

/// Every own table, as one model.
pub fn model() -> &'static ApiModel {
    static M: OnceLock<ApiModel> = OnceLock::new();
    M.get_or_init(|| {
        ApiModel::builder()
            .module(Module::new("/_restkit").resource(users_resource()))
            .module(Module::new("/_restkit_sync").resource(tombstones_resource()))
            .build()
            .expect("restkit's own model is valid")
    })
}

/// `restkit_users`: accounts that sign in with a password (§8).
pub fn users() -> &'static Arc<Resource> {
    &model().modules[0].resources[0]
}

fn users_resource() -> Resource {
    Resource::new("users", "restkit_users")
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(
            Field::new("username", FieldType::String)
                .required()
                .unique(),
        )
        .field(Field::new("passwordHash", FieldType::String).hidden())
        .field(Field::new("createdAt", FieldType::DateTime).created_at())
}

/// `restkit_tombstones`: one row per deleted row of a sync table (§6.7).
fn tombstones_resource() -> Resource {
    Resource::new("tombstones", TOMBSTONES)
        .field(Field::new("id", FieldType::Integer).primary_key())
        .field(Field::new("tableName", FieldType::String).required())
        .field(Field::new("recordId", FieldType::Integer).required())
        .field(Field::new("deletedAt", FieldType::DateTime).required())
        // The deleted row's owner and parent keys, so a sync read of a
        // private or nested resource reports only its caller's deletions.
        .field(Field::new("ownerId", FieldType::Integer))
        .field(Field::new("parentId", FieldType::Integer))
}
