//! RoomManager: a self-hosted live-streaming site in one binary — the control plane that drives
//! a media plane (its own RTMP ingest + ffmpeg by default, or nginx-rtmp + ffmpeg).
//!
//! # Layout
//! - [`config`]: the typed settings from `roommanager.toml`, defaults and validation.
//! - [`store`]: the redb database — tables, schema version, migrations; no redb type leaves it.
//! - [`model`]: ids and the records the store keeps; plain data shared by every part.
//! - [`limits`]: in-memory rate limiters.
//! - [`connections`]: open connections per client address, for the per-IP cap.
//! - [`i18n`]: the interface's languages (en, zh-CN), the reader's choice, the catalogues of
//!   page strings and error messages; used by the web layer only.
//! - [`text`]: the characters that disguise text people show each other (names, danmaku).
//! - [`gzip`]: gzip in memory, for answers kept compressed (the rooms listing, text assets).
//! - [`mail`]: the mail queue's delivery loop and its transports (outbox folder, SMTP).
//! - [`files`]: uploaded images — checked, re-encoded, stored, served.
//! - [`downloads`]: the files admins offer on the downloads page — streamed to disk, hashed,
//!   capped, served under their id.
//! - [`admin`]: admin accounts, their logins and sessions, the first-run setup link, the audit
//!   log's entries.
//! - [`accounts`]: registration and verification, login, sessions, guests, profiles, rooms' records.
//! - [`media`]: the media plane trait (rtp, distributor, processor roles) and its backends.
//! - [`records`]: the catalogue of recordings, search, renaming, deleting (and removing their
//!   media), comments.
//! - [`rooms`]: the room registry and one actor task per open room; the WebSocket protocol.
//! - [`stats`]: the admin's statistics — reports over a date range, CSV, server-drawn SVG charts.
//! - [`metrics`]: operational counters and histograms for `/metrics`.
//! - [`app`]: the running parts wired together; what the web layer holds.
//! - [`web`]: the HTTP layer — router, middleware, pages, assets, error mapping.
//! - [`server`]: serving with graceful shutdown.
//! - [`site`]: where the server is reached from; the host in every URL it hands out.
//!
//! `docs/ARCHITECTURE.md` has the module map with what each part may call.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod calendar;
pub mod config;
pub mod connections;
pub mod downloads;
pub mod files;
pub mod gzip;
pub mod i18n;
pub mod limits;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod model;
pub mod records;
pub mod rooms;
pub mod server;
pub mod site;
pub mod stats;
pub mod store;
pub mod text;
pub mod web;
