//! The downloads' pages: `/downloads` for everyone (each file with its size and SHA-256, and the
//! signed-in host's OBS profile), and `/admin/downloads` for admins (the list, an upload form,
//! a delete button per file). Both work without JavaScript.
//!
//! The admin's upload is a multipart form: its small fields come first (the CSRF token is
//! checked before any of the file is read), then the file, handed to the domain chunk by chunk
//! as it arrives. Calls: app → downloads; auth, csrf, admin pages' layout, downloads' views.

use std::sync::Arc;

use askama::Template;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{Html, Response};

use crate::accounts::SignedIn;
use crate::app::App;
use crate::downloads::{DownloadsError, NewDownload};
use crate::i18n::Lang;
use crate::model::{DownloadId, UserKind};

use super::account_pages::{page, see_other, CsrfOnlyForm, PageForm};
use super::admin_pages::{in_units, AdminLayout};
use super::auth::{AdminPage, ClientIp, MaybeSigned};
use super::csrf::Csrf;
use super::downloads::{interrupted, DownloadView};
use super::error::{ApiError, PageError};
use super::pages::{render, Layout, Speaks as _};
use super::path::ApiPath;

/// A download with its size as a person reads it.
pub struct DownloadRow {
    pub download: DownloadView,
    pub size: String,
}

async fn rows(app: &App) -> Result<Vec<DownloadRow>, ApiError> {
    Ok(app
        .downloads
        .list()
        .await?
        .into_iter()
        .map(|d| DownloadRow {
            size: in_units(d.size),
            download: DownloadView::from(d),
        })
        .collect())
}

#[derive(Template)]
#[template(path = "downloads.html")]
struct DownloadsPage {
    layout: Layout,
    downloads: Vec<DownloadRow>,
    /// Whether to offer the OBS profile: a registered user signed in, rtmp backend.
    obs_profile: bool,
}

/// `GET /downloads`.
pub async fn downloads(
    State(app): State<Arc<App>>,
    lang: Lang,
    MaybeSigned(who): MaybeSigned,
) -> Result<Html<String>, PageError> {
    let host = who
        .as_ref()
        .is_some_and(|w: &SignedIn| w.user.kind == UserKind::Registered);
    render(&DownloadsPage {
        layout: Layout::for_user(lang, lang.t("downloads.title"), who.as_ref()),
        downloads: rows(&app).await?,
        obs_profile: host && app.rtmp.is_some(),
    })
}

#[derive(Template)]
#[template(path = "admin/downloads.html")]
struct AdminDownloadsPage {
    layout: AdminLayout,
    downloads: Vec<DownloadRow>,
    max_size: String,
    error: Option<String>,
}

async fn admin_page(
    app: &App,
    lang: Lang,
    csrf: &Csrf,
    admin: &crate::admin::SignedAdmin,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, PageError> {
    let view = AdminDownloadsPage {
        layout: AdminLayout::new(lang, "admin.nav.downloads", csrf, Some(admin)),
        downloads: rows(app).await?,
        max_size: in_units(app.downloads.max_bytes()),
        error,
    };
    Ok(page(app, csrf, status, &view))
}

/// `GET /admin/downloads`.
pub async fn admin_downloads(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    lang: Lang,
    csrf: Csrf,
) -> Result<Response, PageError> {
    admin_page(&app, lang, &csrf, &admin, StatusCode::OK, None).await
}

/// The longest value of a small field of the upload form, in bytes.
const FIELD_BYTES: usize = 8 * 1024;

/// The small fields of the upload form, in the order the form sends them.
#[derive(Default)]
struct UploadFields {
    csrf: String,
    title: String,
    version: String,
    description: String,
}

/// `POST /admin/downloads` (multipart: csrf, title, version, description, then file).
pub async fn admin_upload(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    lang: Lang,
    csrf: Csrf,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, PageError> {
    let bad_form =
        |detail: String| PageError(ApiError::new(StatusCode::BAD_REQUEST, "bad_form", detail));
    let mut multipart = multipart.map_err(|e| bad_form(e.body_text()))?;
    let mut fields = UploadFields::default();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad_form(e.body_text()))?
    {
        // Fields the form does not have are read like the small ones (and dropped), so none
        // can be larger.
        let mut unknown = String::new();
        let slot = match field.name().unwrap_or_default() {
            "csrf" => &mut fields.csrf,
            "title" => &mut fields.title,
            "version" => &mut fields.version,
            "description" => &mut fields.description,
            "file" => {
                csrf.verify(&fields.csrf)?;
                let filename = field.file_name().unwrap_or_default().to_owned();
                let new = NewDownload::check(
                    &filename,
                    &fields.title,
                    &fields.version,
                    &fields.description,
                );
                let stored = match new {
                    Ok(new) => store_field(&app, new, &mut field, &admin, ip).await,
                    Err(e) => Err(e.into()),
                };
                return match stored {
                    Ok(()) => Ok(see_other("/admin/downloads", None)),
                    Err(e) => {
                        admin_page(
                            &app,
                            lang,
                            &csrf,
                            &admin,
                            e.status,
                            Some(e.message_in(lang)),
                        )
                        .await
                    }
                };
            }
            _ => &mut unknown,
        };
        *slot = small_field(&mut field).await.map_err(PageError)?;
    }
    csrf.verify(&fields.csrf)?;
    let missing = ApiError::from(DownloadsError::Empty);
    admin_page(
        &app,
        lang,
        &csrf,
        &admin,
        missing.status,
        Some(missing.message_in(lang)),
    )
    .await
}

/// A small field's text, at most [`FIELD_BYTES`].
async fn small_field(field: &mut Field<'_>) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(interrupted)? {
        if bytes.len() + chunk.len() > FIELD_BYTES {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_form",
                format!("a field of this form has at most {FIELD_BYTES} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_form", "a field is not UTF-8"))
}

/// Streams the form's file to the domain and lists it.
async fn store_field(
    app: &App,
    new: NewDownload,
    field: &mut Field<'_>,
    admin: &crate::admin::SignedAdmin,
    ip: std::net::IpAddr,
) -> Result<(), ApiError> {
    let mut upload = app.downloads.begin(new).await?;
    while let Some(chunk) = field.chunk().await.map_err(interrupted)? {
        upload.push(&chunk).await?;
    }
    upload.finish(admin, ip).await?;
    Ok(())
}

/// `POST /admin/downloads/{id}/delete`.
pub async fn admin_delete(
    State(app): State<Arc<App>>,
    AdminPage(admin): AdminPage,
    ClientIp(ip): ClientIp,
    csrf: Csrf,
    ApiPath(id): ApiPath<u64>,
    PageForm(form): PageForm<CsrfOnlyForm>,
) -> Result<Response, PageError> {
    csrf.verify(&form.csrf)?;
    app.downloads
        .delete(DownloadId(id), &admin, ip)
        .await
        .map_err(ApiError::from)?;
    Ok(see_other("/admin/downloads", None))
}
