//! Files: uploaded images (avatars, room covers) under `DATA_DIR/files/`.
//!
//! Owns: checking that an upload is an image, re-encoding it, naming it, storing and serving it.
//! Calls: nothing else in the crate. Stored names are generated here (32 random hex digits and an
//! extension); a name from a request is used only after it matched that shape, so no request can
//! reach a path outside the folders. Decoding is CPU work: call these from a blocking thread.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Decoder limits against decompression bombs: no side over 8192 px, at most 256 MiB of pixels.
const MAX_SIDE: u32 = 8192;
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

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
    #[error("no such file")]
    NotFound,
    #[error("file storage failed: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Files {
    root: PathBuf,
}

impl Files {
    /// Uses (and creates) `DATA_DIR/files/{avatars,covers}`.
    pub fn new(data_dir: &Path) -> std::io::Result<Files> {
        let root = data_dir.join("files");
        for kind in [ImageKind::Avatar, ImageKind::Cover] {
            std::fs::create_dir_all(root.join(kind.folder()))?;
        }
        Ok(Files { root })
    }

    /// Checks, decodes, scales and re-encodes an uploaded image, then stores it under a new
    /// name, which it returns. Metadata (EXIF, comments) does not survive re-encoding.
    pub fn save_image(&self, kind: ImageKind, bytes: &[u8]) -> Result<String, FilesError> {
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
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        let mut limits = Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let decoded = reader
            .decode()
            .map_err(|e| FilesError::Undecodable(e.to_string()))?;
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

fn random_hex() -> String {
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

    #[test]
    fn a_large_png_is_scaled_into_the_box_and_stored_under_a_generated_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path()).unwrap();
        let name = files
            .save_image(ImageKind::Avatar, &png(2000, 1000))
            .unwrap();
        assert!(stored_content_type(&name).is_some(), "{name}");
        let (bytes, content_type) = files.read(ImageKind::Avatar, &name).unwrap();
        assert_eq!(content_type, "image/png");
        let stored = image::load_from_memory(&bytes).unwrap();
        assert_eq!((stored.width(), stored.height()), (512, 256));
    }

    #[test]
    fn non_images_and_broken_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path()).unwrap();
        assert!(matches!(
            files.save_image(ImageKind::Cover, b"hello, I am text"),
            Err(FilesError::NotAnImage)
        ));
        let mut broken = png(10, 10);
        broken.truncate(40);
        assert!(matches!(
            files.save_image(ImageKind::Cover, &broken),
            Err(FilesError::Undecodable(_))
        ));
        assert!(matches!(
            files.save_image(ImageKind::Cover, b""),
            Err(FilesError::Empty)
        ));
    }

    #[test]
    fn only_generated_names_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path()).unwrap();
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
