//! Files: uploaded images (avatars, room covers) under `DATA_DIR/files/`.
//!
//! Owns: checking that an upload is an image, re-encoding it, naming it, storing and serving it,
//! and the decode slots that bound how many uploads are decoded at once.
//! Calls: config (its `UploadsConfig`) only. Stored names are generated here (32 random hex
//! digits and an extension); a name from a request is used only after it matched that shape, so
//! no request can reach a path outside the folders. Decoding is CPU work: call
//! [`Files::save_image`] from a blocking thread, holding a [`DecodeSlot`].

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::UploadsConfig;

/// A tiny file can claim a huge picture (a single-colour 8192×8192 lossless WebP is 2.6 KB and
/// decodes to 256 MiB), so the size is checked from the header before any pixel is decoded.
/// Stored images are at most 1280×720, so these leave room for any camera photo or panorama
/// people upload while keeping one decode's output under [`MAX_DECODE_BYTES`].
const MAX_SIDE: u32 = 8192;
const MAX_PIXELS: u64 = 4096 * 4096;
/// What the decoder may allocate for one image (`image::Limits::max_alloc`): 16 megapixels at
/// four 8-bit channels. A 16-bit image of that size is refused by the decoder's own check.
const MAX_DECODE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Avatar,
    Cover,
}

impl ImageKind {
    /// The URL segment and folder name.
    pub fn folder(self) -> &'static str {
        match self {
            ImageKind::Avatar => "avatars",
            ImageKind::Cover => "covers",
        }
    }

    pub fn from_folder(folder: &str) -> Option<ImageKind> {
        match folder {
            "avatars" => Some(ImageKind::Avatar),
            "covers" => Some(ImageKind::Cover),
            _ => None,
        }
    }

    /// Stored images are scaled down to fit in this box.
    fn max_size(self) -> (u32, u32) {
        match self {
            ImageKind::Avatar => (512, 512),
            ImageKind::Cover => (1280, 720),
        }
    }

    /// The public URL of a stored image.
    pub fn url(self, name: &str) -> String {
        format!("/files/{}/{name}", self.folder())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("the upload is empty")]
    Empty,
    #[error("the upload is not a PNG, JPEG, WebP or GIF image")]
    NotAnImage,
    #[error("the image cannot be read: {0}")]
    Undecodable(String),
    #[error(
        "the image is {width}×{height} pixels; at most {} pixels a side and {} megapixels are \
         accepted",
        MAX_SIDE,
        MAX_PIXELS / 1_000_000
    )]
    TooLarge { width: u32, height: u32 },
    #[error("the server is busy with other images; try again in {} seconds", .0.as_secs())]
    Busy(Duration),
    #[error("no such file")]
    NotFound,
    #[error("file storage failed: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Files {
    root: PathBuf,
    /// One permit per decode allowed at once: each holds up to [`MAX_DECODE_BYTES`] (and the
    /// decoder's own buffers), so without this bound N parallel uploads cost N times that.
    decodes: Arc<Semaphore>,
    /// How long an upload waits for a decode slot before it is refused as busy.
    decode_wait: Duration,
}

/// Leave to decode one image; the slot is free again when this is dropped.
pub struct DecodeSlot {
    _permit: OwnedSemaphorePermit,
}

impl Files {
    /// Uses (and creates) `DATA_DIR/files/{avatars,covers}`.
    pub fn new(data_dir: &Path, uploads: &UploadsConfig) -> std::io::Result<Files> {
        let root = data_dir.join("files");
        for kind in [ImageKind::Avatar, ImageKind::Cover] {
            std::fs::create_dir_all(root.join(kind.folder()))?;
        }
        let slots = match uploads.decode_slots {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Ok(Files {
            root,
            decodes: Arc::new(Semaphore::new(slots)),
            decode_wait: Duration::from_millis(uploads.decode_wait_ms),
        })
    }

    /// Waits for a free decode slot, at most `uploads.decode_wait_ms`; then the upload is
    /// refused with [`FilesError::Busy`], which says when to try again.
    pub async fn decode_slot(&self) -> Result<DecodeSlot, FilesError> {
        let acquire = self.decodes.clone().acquire_owned();
        match tokio::time::timeout(self.decode_wait, acquire).await {
            Ok(Ok(permit)) => Ok(DecodeSlot { _permit: permit }),
            // The semaphore is never closed, so only the timeout ends up here.
            Ok(Err(_)) | Err(_) => Err(FilesError::Busy(Duration::from_secs(
                self.decode_wait.as_secs().max(1),
            ))),
        }
    }

    /// Checks, decodes, scales and re-encodes an uploaded image, then stores it under a new
    /// name, which it returns. Metadata (EXIF, comments) does not survive re-encoding. The
    /// slot is the caller's proof that this decode is within the bound.
    pub fn save_image(
        &self,
        _slot: &DecodeSlot,
        kind: ImageKind,
        bytes: &[u8],
    ) -> Result<String, FilesError> {
        if bytes.is_empty() {
            return Err(FilesError::Empty);
        }
        let format = image::guess_format(bytes).map_err(|_| FilesError::NotAnImage)?;
        if !matches!(
            format,
            ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif
        ) {
            return Err(FilesError::NotAnImage);
        }
        let decoded = decode(bytes, format)?;
        let (max_w, max_h) = kind.max_size();
        let image = if decoded.width() > max_w || decoded.height() > max_h {
            decoded.thumbnail(max_w, max_h)
        } else {
            decoded
        };
        let (encoded, extension) = encode(image, format == ImageFormat::Jpeg)?;
        let name = format!("{}.{extension}", random_hex());
        let folder = self.root.join(kind.folder());
        // Write then rename, so a reader never sees half a file.
        let partial = folder.join(format!(".{name}.partial"));
        std::fs::write(&partial, &encoded)?;
        std::fs::rename(&partial, folder.join(&name))?;
        Ok(name)
    }

    /// Reads a stored image; returns its bytes and content type.
    pub fn read(&self, kind: ImageKind, name: &str) -> Result<(Vec<u8>, &'static str), FilesError> {
        let content_type = stored_content_type(name).ok_or(FilesError::NotFound)?;
        match std::fs::read(self.root.join(kind.folder()).join(name)) {
            Ok(bytes) => Ok((bytes, content_type)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FilesError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a stored image that nothing refers to any more; a missing file is fine.
    pub fn remove(&self, kind: ImageKind, name: &str) {
        if stored_content_type(name).is_none() {
            return;
        }
        let path = self.root.join(kind.folder()).join(name);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a replaced image");
            }
        }
    }
}

/// Decodes within the limits: the header's size is checked first, so a bomb costs nothing.
fn decode(bytes: &[u8], format: ImageFormat) -> Result<DynamicImage, FilesError> {
    let undecodable = |e: ImageError| FilesError::Undecodable(e.to_string());
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    let too_large = || FilesError::TooLarge { width, height };
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(too_large());
    }
    // As `ImageReader::decode` does: the output buffer counts against `max_alloc`, and the
    // decoder gets what is left for its own buffers.
    if limits.reserve(decoder.total_bytes()).is_err() {
        return Err(too_large());
    }
    decoder.set_limits(limits).map_err(undecodable)?;
    DynamicImage::from_decoder(decoder).map_err(|e| match e {
        ImageError::Limits(_) => too_large(),
        other => undecodable(other),
    })
}

fn encode(image: DynamicImage, as_jpeg: bool) -> Result<(Vec<u8>, &'static str), FilesError> {
    let mut out = Cursor::new(Vec::new());
    let extension = if as_jpeg {
        let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
        rgb.write_with_encoder(encoder)
            .map_err(|e| FilesError::Undecodable(e.to_string()))?;
        "jpg"
    } else {
        let rgba = DynamicImage::ImageRgba8(image.to_rgba8());
        rgba.write_to(&mut out, ImageFormat::Png)
            .map_err(|e| FilesError::Undecodable(e.to_string()))?;
        "png"
    };
    Ok((out.into_inner(), extension))
}

/// The content type of a name this module generated, or `None` for any other string.
fn stored_content_type(name: &str) -> Option<&'static str> {
    let (stem, extension) = name.split_once('.')?;
    let generated = stem.len() == 32
        && stem
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !generated {
        return None;
    }
    match extension {
        "png" => Some("image/png"),
        "jpg" => Some("image/jpeg"),
        _ => None,
    }
}

/// 32 random hex digits: a name no one can guess.
pub(crate) fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source is always available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::new_rgba8(width, height);
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn files(dir: &tempfile::TempDir) -> Files {
        Files::new(dir.path(), &UploadsConfig::default()).unwrap()
    }

    #[tokio::test]
    async fn a_large_png_is_scaled_into_the_box_and_stored_under_a_generated_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(&dir);
        let slot = files.decode_slot().await.unwrap();
        let name = files
            .save_image(&slot, ImageKind::Avatar, &png(2000, 1000))
            .unwrap();
        assert!(stored_content_type(&name).is_some(), "{name}");
        let (bytes, content_type) = files.read(ImageKind::Avatar, &name).unwrap();
        assert_eq!(content_type, "image/png");
        let stored = image::load_from_memory(&bytes).unwrap();
        assert_eq!((stored.width(), stored.height()), (512, 256));
    }

    #[tokio::test]
    async fn non_images_and_broken_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(&dir);
        let slot = files.decode_slot().await.unwrap();
        assert!(matches!(
            files.save_image(&slot, ImageKind::Cover, b"hello, I am text"),
            Err(FilesError::NotAnImage)
        ));
        let mut broken = png(10, 10);
        broken.truncate(40);
        assert!(matches!(
            files.save_image(&slot, ImageKind::Cover, &broken),
            Err(FilesError::Undecodable(_))
        ));
        assert!(matches!(
            files.save_image(&slot, ImageKind::Cover, b""),
            Err(FilesError::Empty)
        ));
    }

    #[tokio::test]
    async fn a_side_over_the_limit_is_refused_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(&dir);
        let slot = files.decode_slot().await.unwrap();
        let error = files
            .save_image(&slot, ImageKind::Cover, &png(MAX_SIDE + 1, 1))
            .unwrap_err();
        assert!(
            matches!(error, FilesError::TooLarge { width, height: 1 } if width == MAX_SIDE + 1),
            "{error}"
        );
        assert!(error.to_string().contains("8192"), "{error}");
    }

    fn one_slot(wait_ms: u64) -> UploadsConfig {
        UploadsConfig {
            decode_slots: 1,
            decode_wait_ms: wait_ms,
            ..UploadsConfig::default()
        }
    }

    #[tokio::test]
    async fn with_every_slot_taken_an_upload_is_refused_as_busy() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path(), &one_slot(0)).unwrap();
        let held = files.decode_slot().await.unwrap();
        let refused = files.decode_slot().await.err().unwrap();
        assert!(
            matches!(refused, FilesError::Busy(wait) if wait == Duration::from_secs(1)),
            "{refused}"
        );
        drop(held);
        assert!(files.decode_slot().await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_upload_gets_the_slot_as_soon_as_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(Files::new(dir.path(), &one_slot(60_000)).unwrap());
        let held = files.decode_slot().await.unwrap();
        let waiter = tokio::spawn({
            let files = files.clone();
            async move { files.decode_slot().await.is_ok() }
        });
        // On this single-threaded runtime the waiter now runs until it has to wait.
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "the waiter waits while the slot is held"
        );
        drop(held);
        assert!(waiter.await.unwrap());
    }

    #[test]
    fn only_generated_names_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(&dir);
        for name in [
            "../Cargo.toml",
            "..",
            "a.png",
            "/etc/passwd",
            "0123456789abcdef0123456789abcdef.png/..",
        ] {
            assert!(
                matches!(
                    files.read(ImageKind::Avatar, name),
                    Err(FilesError::NotFound)
                ),
                "{name}"
            );
        }
    }
}
