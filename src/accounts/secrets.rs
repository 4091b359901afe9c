//! Secrets: random tokens (sessions, verification links), their stored hashes, and argon2id
//! password hashes. Hashing a password is slow on purpose: call those from a blocking thread.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use crate::model::TokenHash;

/// A new random 256-bit token, as 64 hex digits, and the hash under which it is stored.
pub fn new_token() -> (String, TokenHash) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is always available");
    let token = hex(&bytes);
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored hash of a token, or `None` when the text cannot be a token we issued.
pub fn parse_token(text: &str) -> Option<TokenHash> {
    let well_formed = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then(|| hash_token(&text.to_ascii_lowercase()))
}

fn hash_token(token: &str) -> TokenHash {
    TokenHash(hex(&Sha256::digest(token.as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source is always available");
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Spends the same time as checking a real password, so an unknown account answers as slowly
/// as a wrong password and cannot be told apart by timing.
pub fn verify_against_nobody(password: &str) {
    static NOBODY: OnceLock<String> = OnceLock::new();
    let hash = NOBODY.get_or_init(|| {
        let (random, _) = new_token();
        hash_password(&random).unwrap_or_default()
    });
    let _ = verify_password(password, hash);
}

/// A short random tag for generated guest names, from letters and digits that are not easily
/// confused (no 0/O, 1/I/L).
pub fn guest_tag() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the operating system's random source is always available");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_parse_back_to_their_hash() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(parse_token(&a), Some(hash_a.clone()));
        assert_eq!(parse_token(&a.to_uppercase()), Some(hash_a));
        assert_eq!(parse_token("short"), None);
        assert_eq!(parse_token(&"g".repeat(64)), None);
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }
}
