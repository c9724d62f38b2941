//! Representations of replies. JSON today; XML, CSV and HTML (§5.1) slot
//! in beside it and read the same records.

pub mod json;
