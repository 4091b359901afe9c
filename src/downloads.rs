//! Downloads: the files admins offer on the downloads page (a desktop client build, an OBS
//! profile, a how-to PDF), under `DATA_DIR/downloads/`.
//!
//! Owns: the rules for a download's title, version, description and name; the upload, written
//! to disk as it arrives and hashed on the way ([`Upload`]: at most [`WRITE_BYTES`] held at a
//! time, whatever the file's size), the size cap (`downloads.max_bytes`), and the files on disk.
//! Calls: store (the records, with the admin's audit entry), admin (who acts), accounts'
//! validation rules, config.
//!
//! Names are never paths: the file on disk is named by its id (`downloads/17`); the name the
//! admin gave is only shown and sent in `Content-Disposition`, and a name with a path separator
//! or a control character is refused. An upload is written under a random name
//! (`.upload-….partial`) that only its [`Upload`] knows; dropping the upload before it finished
//! (an error, a client that went away) removes it, and a start removes what a crash left.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::accounts::secrets::hex;
use crate::accounts::validate;
use crate::admin::SignedAdmin;
use crate::config::DownloadsConfig;
use crate::files::random_hex;
use crate::model::{AuditAction, Download, DownloadId};
use crate::store::{unix_now, Store, StoreError};

/// How much of an upload is gathered before it is hashed and written (on a blocking thread).
pub const WRITE_BYTES: usize = 1024 * 1024;
/// The longest name a download may be offered under, in characters.
pub const MAX_FILENAME_CHARS: usize = 200;
const PARTIAL_PREFIX: &str = ".upload-";
const PARTIAL_SUFFIX: &str = ".partial";

#[derive(Debug, thiserror::Error)]
pub enum DownloadsError {
    #[error("{0}")]
    InvalidFilename(String),
    #[error("{0}")]
    InvalidTitle(String),
    #[error("{0}")]
    InvalidVersion(String),
    #[error("{0}")]
    InvalidDescription(String),
    #[error("The file is empty.")]
    Empty,
    #[error("The file is larger than the limit of {0} bytes (downloads.max_bytes).")]
    TooLarge(u64),
    #[error("There is no such download.")]
    NotFound,
    #[error("file storage failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, DownloadsError>;

/// What an admin says about a file before its content arrives, checked.
#[derive(Debug, Clone)]
pub struct NewDownload {
    title: String,
    version: String,
    description: String,
    filename: String,
}

impl NewDownload {
    /// Checks the fields of an upload; nothing is written before they pass.
    pub fn check(filename: &str, title: &str, version: &str, description: &str) -> Result<Self> {
        Ok(NewDownload {
            filename: plain_name(filename).map_err(DownloadsError::InvalidFilename)?,
            title: validate::download_title(title).map_err(DownloadsError::InvalidTitle)?,
            version: validate::download_version(version).map_err(DownloadsError::InvalidVersion)?,
            description: validate::description(description)
                .map_err(DownloadsError::InvalidDescription)?,
        })
    }
}

pub struct Downloads {
    store: Store,
    dir: PathBuf,
    max_bytes: u64,
}

impl Downloads {
    /// Uses (and creates) `DATA_DIR/downloads`, and removes what a stopped server left there:
    /// partial uploads, and files no download lists (a crash between the two steps of an
    /// upload or a delete). Blocking: called once at start.
    pub fn open(data_dir: &Path, config: &DownloadsConfig, store: Store) -> Result<Downloads> {
        let dir = data_dir.join("downloads");
        std::fs::create_dir_all(&dir)?;
        let listed: std::collections::HashSet<u64> =
            store.downloads()?.iter().map(|d| d.id.0).collect();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let leftover = match name.parse::<u64>() {
                Ok(id) => !listed.contains(&id),
                Err(_) => name.starts_with(PARTIAL_PREFIX) && name.ends_with(PARTIAL_SUFFIX),
            };
            if leftover {
                tracing::info!(file = %name, "removing a download file nothing lists");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Downloads {
            store,
            dir,
            max_bytes: config.max_bytes,
        })
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Every download, newest first.
    pub async fn list(&self) -> Result<Vec<Download>> {
        Ok(self.store.run(|s| s.downloads()).await?)
    }

    /// The download `id` and the path of its content, if it is offered under `filename`
    /// (anything else is [`DownloadsError::NotFound`], as if there were no such file).
    pub async fn file(&self, id: DownloadId, filename: &str) -> Result<(Download, PathBuf)> {
        let download = self
            .store
            .run(move |s| s.download(id))
            .await?
            .filter(|d| d.filename == filename)
            .ok_or(DownloadsError::NotFound)?;
        let path = self.dir.join(id.0.to_string());
        Ok((download, path))
    }

    /// Starts an upload: creates its partial file. Feed it with [`Upload::push`], then
    /// [`Upload::finish`].
    pub async fn begin(&self, new: NewDownload) -> Result<Upload> {
        let partial = self
            .dir
            .join(format!("{PARTIAL_PREFIX}{}{PARTIAL_SUFFIX}", random_hex()));
        let opened = partial.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(opened)
        })
        .await
        .map_err(|_| StoreError::TaskFailed)??;
        Ok(Upload {
            store: self.store.clone(),
            dir: self.dir.clone(),
            partial,
            sink: Some(Sink {
                file,
                hash: Sha256::new(),
            }),
            buffer: Vec::with_capacity(WRITE_BYTES),
            received: 0,
            max_bytes: self.max_bytes,
            new,
            finished: false,
        })
    }

    /// Takes a download off the page and removes its file; the audit entry names the admin.
    pub async fn delete(
        &self,
        id: DownloadId,
        admin: &SignedAdmin,
        ip: IpAddr,
    ) -> Result<Download> {
        let audit = admin.audit(
            AuditAction::DeleteDownload,
            format!("download:{id}"),
            "",
            ip,
        );
        let download = self
            .store
            .run(move |s| s.delete_download(id, &audit))
            .await?
            .ok_or(DownloadsError::NotFound)?;
        let path = self.dir.join(id.0.to_string());
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(path))
            .await
            .map_err(|_| StoreError::TaskFailed)?;
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Unlisted already; the next start removes the file.
            Err(e) => {
                tracing::warn!(download = %id, error = %e, "cannot remove a deleted download's file")
            }
        }
        Ok(download)
    }
}

/// The partial file and the hash of what was written to it.
struct Sink {
    file: std::fs::File,
    hash: Sha256,
}

/// An upload on its way to disk. Dropped before [`Upload::finish`] returned, it removes its
/// partial file.
pub struct Upload {
    store: Store,
    dir: PathBuf,
    partial: PathBuf,
    /// `None` while a write is out on a blocking thread, or after one failed.
    sink: Option<Sink>,
    buffer: Vec<u8>,
    received: u64,
    max_bytes: u64,
    new: NewDownload,
    finished: bool,
}

impl Upload {
    /// Takes the next piece of the file; refuses it once the file would be over the cap.
    pub async fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.received += chunk.len() as u64;
        if self.received > self.max_bytes {
            return Err(DownloadsError::TooLarge(self.max_bytes));
        }
        self.buffer.extend_from_slice(chunk);
        if self.buffer.len() >= WRITE_BYTES {
            self.write_buffer().await?;
        }
        Ok(())
    }

    /// Writes what is left, then lists the download (with the admin's audit entry) under a new
    /// id, its file moved to that id's name first.
    pub async fn finish(mut self, admin: &SignedAdmin, ip: IpAddr) -> Result<Download> {
        if self.received == 0 {
            return Err(DownloadsError::Empty);
        }
        self.write_buffer().await?;
        let sink = self.take_sink()?;
        let sha256 = hex(&sink.hash.finalize());
        let id = self.store.run(|s| s.next_download_id()).await?;
        let (partial, stored) = (self.partial.clone(), self.dir.join(id.0.to_string()));
        let placed = stored.clone();
        tokio::task::spawn_blocking(move || {
            sink.file.sync_all()?;
            std::fs::rename(partial, placed)
        })
        .await
        .map_err(|_| StoreError::TaskFailed)??;
        self.finished = true;
        let new = self.new.clone();
        let download = Download {
            id,
            content_type: content_type(&new.filename).to_owned(),
            title: new.title,
            version: new.version,
            description: new.description,
            filename: new.filename,
            size: self.received,
            sha256,
            created_at: unix_now(),
            uploaded_by: admin.admin.name.clone(),
        };
        let audit = admin.audit(AuditAction::AddDownload, format!("download:{id}"), "", ip);
        let listed = download.clone();
        if let Err(e) = self
            .store
            .run(move |s| s.add_download(&listed, &audit))
            .await
        {
            // Never listed: its file goes (or the next start removes it).
            let _ = std::fs::remove_file(&stored);
            return Err(e.into());
        }
        tracing::info!(download = %id, size = download.size, admin = %admin.admin.name, "download added");
        Ok(download)
    }

    fn take_sink(&mut self) -> Result<Sink> {
        self.sink.take().ok_or_else(|| {
            DownloadsError::Io(std::io::Error::other(
                "an earlier write of this upload failed",
            ))
        })
    }

    /// Hashes and writes the buffer on a blocking thread, and waits for it: the next piece is
    /// read only then, so a fast client is held back by the disk, not buffered.
    async fn write_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let mut sink = self.take_sink()?;
        let buffer = std::mem::take(&mut self.buffer);
        let (sink, mut buffer) = tokio::task::spawn_blocking(move || {
            sink.hash.update(&buffer);
            sink.file.write_all(&buffer).map(|()| (sink, buffer))
        })
        .await
        .map_err(|_| StoreError::TaskFailed)??;
        buffer.clear();
        self.buffer = buffer;
        self.sink = Some(sink);
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // A write still out on a blocking thread keeps its handle to the unlinked file, which
        // goes when that write ends.
        if let Err(e) = std::fs::remove_file(&self.partial) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.partial.display(), error = %e, "cannot remove a partial upload");
            }
        }
    }
}

/// The name a download is offered under, trimmed: a plain file name, never a path.
fn plain_name(value: &str) -> std::result::Result<String, String> {
    let name = value.trim();
    // The byte length first, so a huge value is never counted character by character.
    let count = name.chars().take(MAX_FILENAME_CHARS + 1).count();
    if name.is_empty() || count > MAX_FILENAME_CHARS {
        return Err(format!(
            "A file name has 1 to {MAX_FILENAME_CHARS} characters."
        ));
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err("A file name is a name, not a path: no '/', '\\', '.' or '..'.".to_owned());
    }
    if name.chars().any(char::is_control) || crate::text::disguise(name).is_some() {
        return Err("A file name may not contain control or invisible characters.".to_owned());
    }
    Ok(name.to_owned())
}

/// The content type a download is served with, by its name's extension. Never a type a browser
/// would run as a page: anything else is `application/octet-stream`.
fn content_type(filename: &str) -> &'static str {
    let extension = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "gz" | "tgz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// The path a download is fetched at: `/downloads/{id}/{name}`, the name percent-encoded.
pub fn url_of(download: &Download) -> String {
    format!(
        "/downloads/{}/{}",
        download.id,
        percent_encode(&download.filename)
    )
}

/// Every byte but RFC 3986's unreserved characters as `%XX`: fit for a URL path segment and
/// for RFC 5987's `filename*=UTF-8''…`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_names_never_paths() {
        for ok in [
            "RoomManager-1.2.zip",
            "说明书.pdf",
            ".profile",
            "a b (1).tar.gz",
            "%2e%2e",
        ] {
            assert_eq!(plain_name(ok).as_deref(), Ok(ok), "{ok}");
        }
        let long = "x".repeat(MAX_FILENAME_CHARS + 1);
        for bad in [
            "",
            " ",
            ".",
            "..",
            "../../etc/passwd",
            "a/b",
            "a\\b",
            "/etc",
            "a\0b",
            "a\nb",
            "evil\u{202e}fdp.exe",
            &long,
        ] {
            assert!(plain_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_percent_encoded_byte_by_byte() {
        assert_eq!(percent_encode("a b.zip"), "a%20b.zip");
        assert_eq!(percent_encode("说"), "%E8%AF%B4");
        assert_eq!(percent_encode("%2e'\"?#"), "%252e%27%22%3F%23");
    }

    #[test]
    fn no_content_type_is_one_a_browser_runs() {
        assert_eq!(content_type("page.html"), "application/octet-stream");
        assert_eq!(content_type("image.svg"), "application/octet-stream");
        assert_eq!(content_type("Guide.PDF"), "application/pdf");
        assert_eq!(content_type("noextension"), "application/octet-stream");
    }
}
