//! FLV for the per-stream ffmpeg's stdin: a file header whose audio/video flags say what is
//! really sent (wrong flags make ffmpeg wait for a stream that never comes, delaying the first
//! playlist from about 2 s to 16 s), then each RTMP audio, video and data message as a tag
//! with its payload untouched.

use super::amf;

pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;
pub const DATA: u8 = 18;

/// FLV video codec 7 is H.264 (AVC).
const H264: u8 = 7;
/// FLV sound format 10 is AAC.
const AAC: u8 = 10;

/// Which tracks a stream carries, for the header's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracks {
    pub audio: bool,
    pub video: bool,
}

/// The 9-byte file header and the first "previous tag size" (0).
pub fn header(tracks: Tracks) -> Vec<u8> {
    let flags = u8::from(tracks.audio) << 2 | u8::from(tracks.video);
    vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// One tag and its trailing size.
pub fn tag(type_id: u8, timestamp: u32, payload: &[u8]) -> Vec<u8> {
    let size = u32::try_from(payload.len()).unwrap_or(u32::MAX) & 0x00ff_ffff;
    let mut out = Vec::with_capacity(payload.len() + 15);
    out.push(type_id);
    out.extend_from_slice(&size.to_be_bytes()[1..]);
    out.extend_from_slice(&timestamp.to_be_bytes()[1..]);
    out.push(timestamp.to_be_bytes()[0]);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&payload[..size as usize]);
    out.extend_from_slice(&(size + 11).to_be_bytes());
    out
}

/// A data message as it goes into the file: `@setDataFrame` dropped (what follows is the
/// `onMetaData` ffmpeg reads), other data as it came. `None` for one with nothing left.
pub fn data_payload(payload: &[u8]) -> Option<&[u8]> {
    let rest = match amf::leading_string_len(payload) {
        Some(len) if payload.get(3..len) == Some(b"@setDataFrame".as_slice()) => &payload[len..],
        _ => payload,
    };
    (!rest.is_empty()).then_some(rest)
}

/// The tracks a metadata message announces (its `audiocodecid` / `videocodecid`), if it is
/// `onMetaData` and says anything about them.
pub fn announced(payload: &[u8]) -> Option<Tracks> {
    let values = amf::decode_all(payload).ok()?;
    let mut values = values.iter();
    if values.next()?.as_str()? != "onMetaData" {
        return None;
    }
    let meta = values.next()?;
    let has = |key: &str| {
        meta.get(key)
            .is_some_and(|v| !matches!(v, amf::Value::Null))
    };
    let tracks = Tracks {
        audio: has("audiocodecid"),
        video: has("videocodecid"),
    };
    (tracks.audio || tracks.video).then_some(tracks)
}

/// Why a media message's codec is not taken (only H.264 video and AAC audio are copied
/// as they are into HLS), or `None` when it is.
pub fn unsupported_codec(type_id: u8, payload: &[u8]) -> Option<String> {
    let first = *payload.first()?;
    match type_id {
        VIDEO if first & 0x0f != H264 => Some(format!(
            "video codec {} is not H.264 (FLV codec id 7)",
            first & 0x0f
        )),
        AUDIO if first >> 4 != AAC => Some(format!(
            "audio format {} is not AAC (FLV sound format 10)",
            first >> 4
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_data_frame_is_dropped_and_an_empty_one_leaves_nothing() {
        let mut payload = amf::encode(&[amf::Value::String("@setDataFrame".into())]);
        assert_eq!(data_payload(&payload), None);
        let meta = amf::encode(&[
            amf::Value::String("onMetaData".into()),
            amf::object(&[("videocodecid", amf::Value::Number(7.0))]),
        ]);
        payload.extend_from_slice(&meta);
        assert_eq!(data_payload(&payload), Some(meta.as_slice()));
        assert_eq!(
            announced(&meta),
            Some(Tracks {
                audio: false,
                video: true
            })
        );
    }

    #[test]
    fn a_tag_is_framed_with_its_sizes() {
        let t = tag(VIDEO, 0x0102_0304, &[0x17, 0]);
        assert_eq!(t, [9, 0, 0, 2, 2, 3, 4, 1, 0, 0, 0, 0x17, 0, 0, 0, 0, 13]);
        assert_eq!(unsupported_codec(VIDEO, &[0x17]), None);
        assert!(unsupported_codec(VIDEO, &[0x12]).is_some());
        assert_eq!(unsupported_codec(AUDIO, &[0xaf]), None);
        assert!(unsupported_codec(AUDIO, &[0x2f]).is_some());
    }
}
