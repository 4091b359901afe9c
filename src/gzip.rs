//! Gzip in memory, for answers kept compressed and sent as they are: the rooms listing, the text
//! assets and the home page; and [`GzipTail`], for answers whose long end is shared and whose
//! short start is not.
//!
//! Owns: [`gzip`], [`GzipTail`]. Calls: nothing.

use std::io::Write;

use flate2::{Compress, Crc, FlushCompress, Status};

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

/// A gzip member's header: deflate, no name, no time, unknown system (RFC 1952).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The end of many answers, compressed once; each answer compresses only its own start in front
/// of it ([`GzipTail::behind`]). A deflate stream may be made of pieces compressed apart when each
/// piece but the last ends on a byte boundary (a sync flush), as pigz does; the gzip trailer's
/// CRC-32 of the whole is combined from the pieces'.
pub struct GzipTail {
    /// Raw deflate of the tail, its last block marked final.
    deflated: Vec<u8>,
    crc: Crc,
}

impl GzipTail {
    pub fn new(tail: &[u8], level: Compression) -> GzipTail {
        let mut crc = Crc::new();
        crc.update(tail);
        GzipTail {
            deflated: deflate(tail, level, FlushCompress::Finish),
            crc,
        }
    }

    /// `head` followed by the tail, gzipped; `head` at `level`.
    pub fn behind(&self, head: &[u8], level: Compression) -> Vec<u8> {
        let mut crc = Crc::new();
        crc.update(head);
        crc.combine(&self.crc);
        let head = deflate(head, level, FlushCompress::Sync);
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + head.len() + self.deflated.len() + 8);
        out.extend_from_slice(&GZIP_HEADER);
        out.extend_from_slice(&head);
        out.extend_from_slice(&self.deflated);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE: the length modulo 2³², as `amount` counts it.
        out.extend_from_slice(&crc.amount().to_le_bytes());
        out
    }
}

/// `data` as raw deflate: with `Finish`, a whole stream; with `Sync`, blocks that end on a byte
/// boundary, none of them final, so more blocks may follow.
fn deflate(data: &[u8], level: Compression, flush: FlushCompress) -> Vec<u8> {
    let mut compress = Compress::new(level, false);
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let read = usize::try_from(compress.total_in()).expect("the input is in memory");
        let status = compress
            .compress_vec(&data[read..], &mut out, flush)
            .expect("compressing into memory cannot fail");
        let all_read = compress.total_in() == data.len() as u64;
        // A flush is complete once it stopped with room to spare in the output.
        let flushed = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => all_read && out.len() < out.capacity(),
        };
        if flushed {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("a valid gzip stream");
        out
    }

    #[test]
    fn a_head_behind_a_shared_tail_decodes_to_both() {
        let page: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("<a href=\"/room/{i}\">room {}</a>\n", i % 977).into_bytes())
            .collect();
        for (head, tail) in [
            (&page[..0], &page[..]),
            (&page[..1500], &page[1500..]),
            (&page[..], &page[..0]),
            (&page[..400_000], &page[400_000..400_001]),
        ] {
            let shared = GzipTail::new(tail, Compression::default());
            for level in [Compression::fast(), Compression::default()] {
                let whole = gunzip(&shared.behind(head, level));
                assert_eq!(whole.len(), head.len() + tail.len());
                assert!(whole == [head, tail].concat());
            }
        }
    }
}
