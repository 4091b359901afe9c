//! The outgoing mail queue: a message stays here until it is delivered, so neither a mail
//! server outage nor a restart loses it.

use redb::{ReadableDatabase, ReadableTable};

use super::codec::{decode, encode};
use super::tables::MAIL_QUEUE;
use super::{Store, StoreError};
use crate::model::{MailId, QueuedMail};

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

    /// Removes a delivered message.
    pub fn mail_delivered(&self, id: MailId) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(MAIL_QUEUE)?.remove(id.0)?;
        txn.commit()?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
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
                mail.last_error = Some(error.to_owned());
                mail.next_attempt_at = next_attempt_at;
                table.insert(id.0, encode(&mail).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
