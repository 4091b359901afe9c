//! The RTMP chunk stream, publish side: the simple handshake, the demultiplexing of a peer's
//! chunks into messages (per chunk stream state, the four header formats, extended timestamps,
//! chunk streams interleaved), and the framing of RoomManager's own few messages. Sans-IO:
//! bytes in, messages out, nothing here blocks or panics on any input.

use std::collections::HashMap;

/// C0/S0: the protocol version.
pub const VERSION: u8 = 3;
/// C1, S1, C2, S2 are this long.
pub const HANDSHAKE_LEN: usize = 1536;
/// The chunk size both sides start with.
const DEFAULT_CHUNK_SIZE: usize = 128;
/// The largest chunk size a peer may announce; larger is refused (a chunk is buffered whole).
pub const MAX_CHUNK_SIZE: usize = 64 * 1024;
/// Chunk streams a peer may have messages in flight on at once (ffmpeg and OBS use 3 to 6).
const MAX_CHUNK_STREAMS: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk size {0} is over the {MAX_CHUNK_SIZE} allowed")]
    ChunkSize(u32),
    #[error("a {0}-byte message is over the {1} allowed")]
    MessageSize(usize, usize),
    #[error("messages in flight on several chunk streams exceed {0} bytes")]
    InFlight(usize),
    #[error("too many chunk streams at once")]
    ChunkStreams,
    #[error("a chunk continues chunk stream {0}, which never started")]
    NoPrevious(u32),
}

/// One whole message from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub type_id: u8,
    pub stream_id: u32,
    /// Milliseconds.
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

/// The last header seen on one chunk stream, and the message being put together on it.
#[derive(Default)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    partial: Option<Vec<u8>>,
}

/// Turns the peer's bytes into messages.
pub struct Decoder {
    buffer: Vec<u8>,
    chunk_size: usize,
    max_message: usize,
    streams: HashMap<u32, ChunkStream>,
    /// Bytes announced by the messages being put together on all chunk streams.
    in_flight: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            buffer: Vec::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_message,
            streams: HashMap::new(),
            in_flight: 0,
        }
    }

    /// From now on, messages up to `max` bytes are taken (a publisher's media, once its
    /// publish is accepted; its commands before are far smaller).
    pub fn allow_messages_up_to(&mut self, max: usize) {
        self.max_message = max;
    }

    /// Takes bytes read from the peer; [`Decoder::next`] then gives the messages they finish.
    /// The caller feeds more only once `next` gave `None` (the buffer holds less than a whole
    /// chunk then), so the buffer stays below one chunk plus one read.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, `None` until more bytes are fed. Set Chunk Size and Abort are
    /// handled here and also returned.
    pub fn next(&mut self) -> Result<Option<Message>, ChunkError> {
        loop {
            let Some((used, finished)) = self.chunk()? else {
                return Ok(None);
            };
            self.buffer.drain(..used);
            let Some(message) = finished else { continue };
            match message.type_id {
                1 => {
                    let size = be_u32(&message.payload).unwrap_or(0) & 0x7fff_ffff;
                    if size as usize > MAX_CHUNK_SIZE {
                        return Err(ChunkError::ChunkSize(size));
                    }
                    self.chunk_size = (size as usize).max(1);
                }
                2 => {
                    let csid = be_u32(&message.payload).unwrap_or(0);
                    if let Some(stream) = self.streams.get_mut(&csid) {
                        if let Some(partial) = stream.partial.take() {
                            self.in_flight -= stream.length.min(self.in_flight);
                            drop(partial);
                        }
                    }
                }
                _ => {}
            }
            return Ok(Some(message));
        }
    }

    /// Parses one chunk at the front of the buffer: the bytes it takes and the message it
    /// finishes, or `None` if the chunk is not all here yet.
    #[allow(clippy::type_complexity)]
    fn chunk(&mut self) -> Result<Option<(usize, Option<Message>)>, ChunkError> {
        let b = &self.buffer;
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut at) = match first & 0x3f {
            0 => match b.get(1) {
                Some(&x) => (64 + u32::from(x), 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&x), Some(&y)) => (64 + u32::from(x) + 256 * u32::from(y), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(header) = b.get(at..at + header_len) else {
            return Ok(None);
        };
        at += header_len;
        if fmt != 0 && !self.streams.contains_key(&csid) {
            return Err(ChunkError::NoPrevious(csid));
        }
        if fmt == 0 && !self.streams.contains_key(&csid) && self.streams.len() >= MAX_CHUNK_STREAMS
        {
            return Err(ChunkError::ChunkStreams);
        }
        let previous = self.streams.get(&csid);
        let starts = previous.is_none_or(|s| s.partial.is_none());
        let stamp_field = (fmt < 3).then(|| be_u24(header));
        let extended = match stamp_field {
            Some(field) => field == 0x00ff_ffff,
            None => previous.is_some_and(|s| s.extended),
        };
        let stamp = if extended {
            let Some(ext) = b.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            be_u32(ext).unwrap_or(0)
        } else {
            stamp_field.unwrap_or(0)
        };
        let (length, type_id) = if fmt <= 1 {
            (be_u24(&header[3..]) as usize, header[6])
        } else {
            let s = previous.ok_or(ChunkError::NoPrevious(csid))?;
            (s.length, s.type_id)
        };
        if length > self.max_message {
            return Err(ChunkError::MessageSize(length, self.max_message));
        }
        let (already, in_flight_before) = match previous.and_then(|s| s.partial.as_ref()) {
            Some(partial) if !starts => (partial.len(), 0),
            _ => (0, length),
        };
        let take = self.chunk_size.min(length - already.min(length));
        let Some(data) = b.get(at..at + take) else {
            return Ok(None);
        };
        at += take;
        if self.in_flight + in_flight_before > 2 * self.max_message {
            return Err(ChunkError::InFlight(2 * self.max_message));
        }
        let data = data.to_vec();
        let stream = self.streams.entry(csid).or_default();
        if starts {
            match fmt {
                0 => {
                    stream.timestamp = stamp;
                    stream.delta = 0;
                    stream.stream_id =
                        u32::from_le_bytes([header[7], header[8], header[9], header[10]]);
                }
                1 | 2 => {
                    stream.delta = stamp;
                    stream.timestamp = stream.timestamp.wrapping_add(stamp);
                }
                _ => stream.timestamp = stream.timestamp.wrapping_add(stream.delta),
            }
            if fmt <= 1 {
                stream.length = length;
                stream.type_id = type_id;
            }
            if fmt < 3 {
                stream.extended = extended;
            }
            self.in_flight += length;
            stream.partial = Some(Vec::with_capacity(length.min(MAX_CHUNK_SIZE)));
        }
        let partial = stream.partial.get_or_insert_with(Vec::new);
        partial.extend_from_slice(&data);
        if partial.len() < stream.length {
            return Ok(Some((at, None)));
        }
        let payload = stream.partial.take().unwrap_or_default();
        self.in_flight -= stream.length.min(self.in_flight);
        let message = Message {
            type_id: stream.type_id,
            stream_id: stream.stream_id,
            timestamp: stream.timestamp,
            payload,
        };
        Ok(Some((at, Some(message))))
    }
}

fn be_u24(b: &[u8]) -> u32 {
    match b {
        [x, y, z, ..] => u32::from_be_bytes([0, *x, *y, *z]),
        _ => 0,
    }
}

fn be_u32(b: &[u8]) -> Option<u32> {
    match b {
        [w, x, y, z, ..] => Some(u32::from_be_bytes([*w, *x, *y, *z])),
        _ => None,
    }
}

/// Frames a message of RoomManager's as chunks of `chunk_size` on chunk stream `csid`.
pub fn encode(csid: u8, message: &Message, chunk_size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.payload.len() + 16);
    let length = u32::try_from(message.payload.len()).unwrap_or(u32::MAX);
    let stamp = message.timestamp.min(0x00ff_fffe);
    out.push(csid & 0x3f);
    out.extend_from_slice(&stamp.to_be_bytes()[1..]);
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(message.type_id);
    out.extend_from_slice(&message.stream_id.to_le_bytes());
    for (i, piece) in message.payload.chunks(chunk_size.max(1)).enumerate() {
        if i > 0 {
            out.push(0xc0 | (csid & 0x3f));
        }
        out.extend_from_slice(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(type_id: u8, payload: Vec<u8>) -> Message {
        Message {
            type_id,
            stream_id: 1,
            timestamp: 40,
            payload,
        }
    }

    fn decode(bytes: &[u8]) -> Result<Vec<Message>, ChunkError> {
        let mut decoder = Decoder::new(8 << 20);
        decoder.feed(bytes);
        let mut out = Vec::new();
        while let Some(m) = decoder.next()? {
            out.push(m);
        }
        Ok(out)
    }

    /// OBS sends the chunks of an audio message between those of a video message.
    #[test]
    fn interleaved_chunk_streams_each_give_their_own_message() {
        let video = message(9, vec![7; 300]);
        let audio = message(8, vec![8; 200]);
        let v = encode(6, &video, 128);
        let a = encode(4, &audio, 128);
        // video chunk 1 (12 + 128), audio chunk 1 (12 + 128), video rest, audio rest.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&v[..140]);
        bytes.extend_from_slice(&a[..140]);
        bytes.extend_from_slice(&v[140..]);
        bytes.extend_from_slice(&a[140..]);
        assert_eq!(decode(&bytes), Ok(vec![video, audio]));
    }

    #[test]
    fn limits_are_errors() {
        let huge = [0x02, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        assert!(matches!(decode(&huge), Err(ChunkError::MessageSize(..))));
        let chunk_size = encode(2, &message(1, 0x7fff_ffffu32.to_be_bytes().to_vec()), 128);
        assert_eq!(decode(&chunk_size), Err(ChunkError::ChunkSize(0x7fff_ffff)));
        assert_eq!(decode(&[0xc5]), Err(ChunkError::NoPrevious(5)));
    }

    #[test]
    fn random_and_truncated_bytes_never_panic() {
        let good = encode(6, &message(9, vec![1; 1000]), 128);
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5_000 {
            let bytes: Vec<u8> = (0..(seed % 400))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }
}
