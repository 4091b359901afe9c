//! Record encoding: JSON bytes in, typed values out, with a damaged record reported as
//! [`StoreError::Corrupt`] instead of a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("model records are plain data that JSON can always express")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Damaged {
        what,
        problem: e.to_string(),
    })
}
