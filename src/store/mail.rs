//! The outgoing mail queue: a message stays here until it is delivered, so neither a mail
//! server outage nor a restart loses it. Delivered messages move to a short log
//! (`mail_sent_v1`, the latest [`MAIL_SENT_KEPT`]) for the admin's mail page.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::accounts::enqueue_mail_in;
use super::admin::write_audit;
use super::codec::{decode, encode};
use super::tables::{MAIL_QUEUE, MAIL_SENT};
use super::{MailDraft, Store, StoreError};
use crate::model::{AuditEntry, MailId, QueuedMail, SentMail};

/// How many delivered messages the mail page's log keeps; older ones are forgotten.
pub const MAIL_SENT_KEPT: usize = 500;
/// The longest delivery error kept with a queued message, in bytes: an SMTP server's answer
/// can be long, and it is rewritten on every retry.
pub const MAIL_ERROR_MAX_BYTES: usize = 1000;

impl Store {
    /// Every queued message, oldest first.
    pub fn queued_mail(&self) -> Result<Vec<QueuedMail>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MAIL_QUEUE)?;
        let mut mails = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            mails.push(decode(value.value(), "queued mail")?);
        }
        Ok(mails)
    }

    /// A queued message.
    pub fn queued(&self, id: MailId) -> Result<Option<QueuedMail>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MAIL_QUEUE)?;
        let mail = table.get(id.0)?;
        mail.map(|v| decode(v.value(), "queued mail")).transpose()
    }

    /// The latest delivered messages, newest first, at most `limit`.
    pub fn sent_mail(&self, limit: usize) -> Result<Vec<SentMail>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MAIL_SENT)?;
        let mut mails = Vec::new();
        for entry in table.iter()?.rev().take(limit) {
            let (_, value) = entry?;
            mails.push(decode(value.value(), "sent mail")?);
        }
        Ok(mails)
    }

    /// A delivered message still in the log.
    pub fn sent(&self, id: MailId) -> Result<Option<SentMail>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MAIL_SENT)?;
        let mail = table.get(id.0)?;
        mail.map(|v| decode(v.value(), "sent mail")).transpose()
    }

    /// Queues a message with the audit entry of the admin who asked for it, in one
    /// transaction.
    pub fn enqueue_audited(
        &self,
        draft: MailDraft,
        now: u64,
        audit: &AuditEntry,
    ) -> Result<QueuedMail, StoreError> {
        let txn = self.db.begin_write()?;
        let mail = enqueue_mail_in(&txn, draft, now)?;
        write_audit(&txn, audit)?;
        txn.commit()?;
        Ok(mail)
    }

    /// Moves a delivered message from the queue to the log (its text kept if `keep_text`),
    /// forgetting the oldest logged beyond [`MAIL_SENT_KEPT`].
    pub fn mail_delivered(
        &self,
        id: MailId,
        delivered_at: u64,
        keep_text: bool,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut queue = txn.open_table(MAIL_QUEUE)?;
            let queued = queue
                .remove(id.0)?
                .map(|v| decode::<QueuedMail>(v.value(), "queued mail"))
                .transpose()?;
            if let Some(mail) = queued {
                let sent = SentMail {
                    id: mail.id,
                    to: mail.to,
                    subject: mail.subject,
                    text: keep_text.then_some(mail.text),
                    created_at: mail.created_at,
                    delivered_at,
                    attempts: mail.attempts,
                };
                let mut log = txn.open_table(MAIL_SENT)?;
                log.insert(id.0, encode(&sent).as_slice())?;
                let extra = (log.len()? as usize).saturating_sub(MAIL_SENT_KEPT);
                for _ in 0..extra {
                    log.pop_first()?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Records a failed attempt (its error cut to [`MAIL_ERROR_MAX_BYTES`]) and when to try
    /// again.
    pub fn mail_failed(
        &self,
        id: MailId,
        error: &str,
        next_attempt_at: u64,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(MAIL_QUEUE)?;
            let mail = table
                .get(id.0)?
                .map(|v| decode::<QueuedMail>(v.value(), "queued mail"))
                .transpose()?;
            if let Some(mut mail) = mail {
                mail.attempts += 1;
                mail.last_error = Some(clipped(error, MAIL_ERROR_MAX_BYTES).to_owned());
                mail.next_attempt_at = next_attempt_at;
                table.insert(id.0, encode(&mail).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// The longest start of `text` with at most `max` bytes, cut between characters.
fn clipped(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::clipped;

    #[test]
    fn an_error_is_cut_between_characters() {
        assert_eq!(clipped("short", 10), "short");
        assert_eq!(clipped("封禁封禁", 4), "封");
        assert_eq!(clipped("abc", 0), "");
    }
}
