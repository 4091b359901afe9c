//! AMF0, the encoding of RTMP commands and stream metadata: the values a publisher sends
//! (decoded without ever panicking, nesting bounded) and the few RoomManager answers with.

/// Nested objects deeper than this are refused: a hostile peer must not exhaust the stack.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    String(String),
    /// An object or an ECMA array: its properties in order.
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    Array(Vec<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed AMF0: {0}")]
pub struct AmfError(&'static str);

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        if self.bytes.len() < n {
            return Err(AmfError("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, AmfError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, AmfError> {
        let b = self.take(4)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .map_err(|_| AmfError("length out of range"))
    }

    fn string(&mut self, len: usize) -> Result<String, AmfError> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Value, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError("nested too deep"));
        }
        Ok(match self.u8()? {
            0x00 => {
                let b = self.take(8)?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                Value::Number(f64::from_be_bytes(raw))
            }
            0x01 => Value::Boolean(self.u8()? != 0),
            0x02 => {
                let len = self.u16()?;
                Value::String(self.string(len)?)
            }
            0x03 => Value::Object(self.properties(depth)?),
            0x05 => Value::Null,
            0x06 => Value::Undefined,
            0x08 => {
                // The count is a hint only (encoders get it wrong): the end marker ends it.
                self.take(4)?;
                Value::Object(self.properties(depth)?)
            }
            0x0a => {
                let count = self.u32()?;
                // Each value takes at least one byte: a count beyond what is left is a lie.
                if count > self.bytes.len() {
                    return Err(AmfError("array longer than its message"));
                }
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            0x0b => {
                let b = self.take(8)?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                self.take(2)?;
                Value::Number(f64::from_be_bytes(raw))
            }
            0x0c => {
                let len = self.u32()?;
                Value::String(self.string(len)?)
            }
            _ => return Err(AmfError("unsupported type")),
        })
    }

    /// Properties up to the end marker (an empty name and 0x09).
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            let len = self.u16()?;
            if len == 0 {
                if self.bytes.first() == Some(&0x09) {
                    self.take(1)?;
                    return Ok(props);
                }
                // Some encoders omit the marker at the very end of a message.
                if self.bytes.is_empty() {
                    return Ok(props);
                }
            }
            let key = self.string(len)?;
            props.push((key, self.value(depth + 1)?));
        }
    }
}

/// Every value in `bytes`, in order.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Value>, AmfError> {
    let mut reader = Reader { bytes };
    let mut values = Vec::new();
    while !reader.bytes.is_empty() {
        values.push(reader.value(0)?);
    }
    Ok(values)
}

/// How many bytes the first value of `bytes` takes, if it is a whole short string (what a
/// `@setDataFrame` starts with).
pub fn leading_string_len(bytes: &[u8]) -> Option<usize> {
    let (&marker, rest) = bytes.split_first()?;
    if marker != 0x02 || rest.len() < 2 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    (rest.len() >= 2 + len).then_some(3 + len)
}

pub fn encode(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        put(&mut out, value);
    }
    out
}

fn put(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Boolean(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Value::String(s) => {
            out.push(0x02);
            put_key(out, s);
        }
        Value::Object(props) => {
            out.push(0x03);
            for (key, value) in props {
                put_key(out, key);
                put(out, value);
            }
            out.extend_from_slice(&[0, 0, 0x09]);
        }
        Value::Null => out.push(0x05),
        Value::Undefined => out.push(0x06),
        Value::Array(items) => {
            out.push(0x0a);
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for item in items {
                put(out, item);
            }
        }
    }
}

/// A short string without its marker; what RoomManager sends is far below 64 KiB, longer text
/// is cut.
fn put_key(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// `key: value` pairs as an object.
pub fn object(props: &[(&str, Value)]) -> Value {
    Value::Object(
        props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encoded_decodes_the_same() {
        let values = vec![
            Value::String("_result".into()),
            Value::Number(1.0),
            object(&[
                ("code", Value::String("NetStream.Publish.Start".into())),
                ("n", Value::Null),
                ("ok", Value::Boolean(true)),
            ]),
            Value::Array(vec![Value::Undefined]),
        ];
        assert_eq!(decode_all(&encode(&values)), Ok(values));
    }

    #[test]
    fn hostile_input_is_an_error_never_a_panic() {
        let deep: Vec<u8> = std::iter::repeat_n([0x0a, 0, 0, 0, 1], 100)
            .flatten()
            .collect();
        assert!(decode_all(&deep).is_err());
        assert!(decode_all(&[0x0a, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_all(&[0x02, 0xff]).is_err());
        assert_eq!(leading_string_len(&[0x02, 0, 5, b'a']), None);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 16) as u8
                })
                .collect();
            let _ = decode_all(&bytes);
            let _ = leading_string_len(&bytes);
        }
    }
}
