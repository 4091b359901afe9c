//! Gzip in memory, for answers kept compressed and sent as they are: the rooms listing and the
//! text assets.
//!
//! Owns: [`gzip`]. Calls: nothing.

use std::io::Write;

pub use flate2::Compression;

/// `data` gzipped at `level`.
pub fn gzip(data: &[u8], level: Compression) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 3), level);
    encoder
        .write_all(data)
        .expect("compressing into memory cannot fail");
    encoder
        .finish()
        .expect("compressing into memory cannot fail")
}
