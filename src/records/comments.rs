//! Comments on recordings: reading them newest first, posting (registered, verified, not
//! chat-banned users, at the danmaku's rate, with the danmaku's text rules) and deleting (the
//! author or the record's host).
//!
//! Owns: who may comment and delete, and what a comment may hold. Calls: store (comments, bans,
//! records), limits (through [`Records`]), text, model.

use crate::limits::Key;
use crate::model::{BanScope, CommentId, RecordComment, RecordId, User, UserKind};
use crate::store::unix_now;
use crate::text::{chat_line, LineProblem};

use super::{Paging, Records, RecordsError, Result};

/// The longest comment, in characters (after trimming).
pub const MAX_CHARS: usize = 500;

/// One page of a record's comments, newest first, and how many it has.
#[derive(Debug, Clone)]
pub struct CommentPage {
    pub comments: Vec<RecordComment>,
    pub total: u64,
}

impl Records {
    pub async fn comments(&self, record: RecordId, paging: Paging) -> Result<CommentPage> {
        self.store
            .run(move |s| {
                if s.record(record)?.is_none() {
                    return Ok(None);
                }
                let (comments, total) =
                    s.record_comments(record, paging.offset(), paging.per_page)?;
                Ok(Some(CommentPage { comments, total }))
            })
            .await?
            .ok_or(RecordsError::NotFound)
    }

    /// Posts a comment on a record, optionally at a point of the video (`position_ms`, which
    /// must lie within the recording).
    pub async fn comment(
        &self,
        who: &User,
        record: RecordId,
        text: &str,
        position_ms: Option<i64>,
    ) -> Result<RecordComment> {
        if who.kind == UserKind::Guest {
            return Err(RecordsError::RegisteredOnly);
        }
        if !who.is_verified() {
            return Err(RecordsError::NotVerified);
        }
        let user = who.id;
        let bans = self.store.run(move |s| s.bans_of(user)).await?;
        let now = unix_now();
        if bans
            .iter()
            .any(|b| b.scope == BanScope::Chat && b.in_force(now))
        {
            return Err(RecordsError::ChatBanned);
        }
        let text = chat_line(text, MAX_CHARS).map_err(|problem| match problem {
            LineProblem::Empty => RecordsError::EmptyComment,
            LineProblem::TooLong(max) => RecordsError::CommentTooLong(max),
            LineProblem::Disguised(c) => RecordsError::InvisibleCharacters(c),
        })?;
        let found = self.record(record).await?;
        let position_ms = match position_ms {
            None => None,
            Some(ms) => {
                let end = found.duration_secs.saturating_mul(1000);
                match u64::try_from(ms) {
                    Ok(ms) if ms <= end => Some(ms),
                    _ => {
                        return Err(RecordsError::InvalidPosition(format!(
                            "`position_ms` is a point in the video, from 0 to {end} \
                             (its end); {ms} is not"
                        )))
                    }
                }
            }
        };
        self.comment_rate
            .check(Key::of(&[b"record comment", &user.0.to_le_bytes()]))?;
        let comment = RecordComment {
            id: CommentId(0),
            record,
            author: user,
            nickname: who.nickname.clone(),
            text,
            position_ms,
            created_at: now,
        };
        self.store
            .run(move |s| s.add_record_comment(comment))
            .await?
            .ok_or(RecordsError::NotFound)
    }

    /// Deletes a comment: its author or the record's host may.
    pub async fn delete_comment(&self, who: &User, record: RecordId, id: CommentId) -> Result<()> {
        let host = self.record(record).await?.host;
        let comment = self
            .store
            .run(move |s| s.record_comment(record, id))
            .await?
            .ok_or(RecordsError::CommentNotFound)?;
        if who.id != comment.author && who.id != host {
            return Err(RecordsError::NotYourComment);
        }
        if !self
            .store
            .run(move |s| s.delete_record_comment(record, id))
            .await?
        {
            return Err(RecordsError::CommentNotFound);
        }
        Ok(())
    }
}
