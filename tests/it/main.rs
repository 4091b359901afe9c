//! Integration tests: one test binary, modules by area, sharing the harness in `common`.
//! Every test talks to a real server over real sockets on 127.0.0.1.

mod common;

mod accounts;
mod accounts_abuse;
mod accounts_login;
mod accounts_profile;
mod admin;
mod admin_bans;
mod admin_ip_bans;
mod admin_mail;
mod admin_moderation;
mod admin_pages;
mod admin_stats;
mod admin_users;
mod browser;
mod browser_admin;
mod browser_moderation;
mod browser_publish;
mod browser_records;
mod browser_room;
mod config;
mod connections;
mod downloads;
mod http;
mod http_docs;
mod lan;
mod lifecycle;
mod mail;
mod media_http;
mod media_rtmp;
mod metrics;
mod protocol;
mod publish;
mod record_pages;
mod recording_parts;
mod records;
mod records_comments;
mod records_watch;
mod rooms;
mod rooms_abuse;
mod session_end;
mod store;
mod studio;
mod uploads;
mod web_hardening;
