//! What the bench fillers share: verified accounts made through the Store API, as registering and
//! one click on the verification link make them (each gets its room).

use roommanager::model::{RoomId, TokenHash, UserId};
use roommanager::store::{MailDraft, NewAccount, NewToken, RegisterOutcome, Store, VerifyOutcome};

/// Registers `username` at `created_at` and verifies it at `verified_at`; `n` keeps each
/// account's verification token apart. Returns the user and their room.
pub fn verified_account(
    store: &Store,
    n: u64,
    username: &str,
    created_at: u64,
    verified_at: u64,
) -> Result<(UserId, RoomId), Box<dyn std::error::Error>> {
    let hash = TokenHash(format!("bench-verify-{n}"));
    let account = NewAccount {
        username: username.to_owned(),
        email: format!("{username}@bench.example"),
        password_hash: "not a real hash: these accounts never log in".to_owned(),
        lang: "en".to_owned(),
        now: created_at,
    };
    let token = NewToken {
        hash: hash.clone(),
        expires_at: u64::MAX,
    };
    let mail = MailDraft {
        to: account.email.clone(),
        subject: "bench".to_owned(),
        text: "bench".to_owned(),
    };
    let RegisterOutcome::Created(_) = store.register(account, token, mail, 0)? else {
        return Err(format!("{username} exists already: fill an empty data dir").into());
    };
    let VerifyOutcome::Verified(user) = store.verify(&hash, verified_at)? else {
        return Err(format!("{username} was not verified").into());
    };
    let room = user.room_id.ok_or("a verified user has a room")?;
    Ok((user.id, room))
}
