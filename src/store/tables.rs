//! Every redb table RoomManager keeps, in one place.
//!
//! A table's name carries its layout version (`users_v1`): changing a layout means a new table
//! and a numbered step in `migrations.rs`, never an in-place reinterpretation of old bytes.
//! `meta` is the exception: it holds the schema version itself, so its name never changes.

use redb::TableDefinition;

/// Store-wide facts, key → value: `schema_version`, `created_at` (unix seconds), `instance_id`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub const META_SCHEMA_VERSION: &str = "schema_version";
pub const META_CREATED_AT: &str = "created_at";
pub const META_INSTANCE_ID: &str = "instance_id";
