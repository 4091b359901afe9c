//! RoomManager: a self-hosted live-streaming site in one binary — the control plane that drives
//! a media plane (nginx-rtmp + ffmpeg by default).
//!
//! # Layout
//! - [`config`]: the typed settings from `roommanager.toml`, defaults and validation.
//! - [`store`]: the redb database — tables, schema version, migrations; no redb type leaves it.
//! - [`metrics`]: operational counters and histograms for `/metrics`.
//! - [`app`]: the running parts wired together; what the web layer holds.
//! - [`web`]: the HTTP layer — router, middleware, pages, assets, error mapping.
//! - [`server`]: serving with graceful shutdown.
//!
//! `docs/ARCHITECTURE.md` has the module map with what each part may call.

pub mod app;
pub mod config;
pub mod metrics;
pub mod server;
pub mod store;
pub mod web;
