//! The downloads page's files in the store: their records, never their content (that is in
//! `DATA_DIR/downloads/`, kept by `crate::downloads`). Adding and deleting write the admin's
//! audit entry in the same transaction.

use redb::{ReadableDatabase, ReadableTable};

use super::accounts::next_id;
use super::admin::write_audit;
use super::codec::{decode, encode};
use super::tables::*;
use super::{Store, StoreError};
use crate::model::{AuditEntry, Download, DownloadId};

impl Store {
    /// A new download id, taken before the file is moved to its name: ids are never reused,
    /// so a file left by a crash between the two steps never meets a later record.
    pub fn next_download_id(&self) -> Result<DownloadId, StoreError> {
        let txn = self.db.begin_write()?;
        let id = next_id(&txn, SEQ_DOWNLOAD)?;
        txn.commit()?;
        Ok(DownloadId(id))
    }

    /// Lists `download` (its file is in place already) with the admin's audit entry.
    pub fn add_download(&self, download: &Download, audit: &AuditEntry) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(DOWNLOADS)?
            .insert(download.id.0, encode(download).as_slice())?;
        write_audit(&txn, audit)?;
        txn.commit()?;
        Ok(())
    }

    /// Every download, newest first.
    pub fn downloads(&self) -> Result<Vec<Download>, StoreError> {
        let txn = self.db.begin_read()?;
        let mut out = Vec::new();
        for entry in txn.open_table(DOWNLOADS)?.iter()?.rev() {
            out.push(decode(entry?.1.value(), "download")?);
        }
        Ok(out)
    }

    pub fn download(&self, id: DownloadId) -> Result<Option<Download>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DOWNLOADS)?;
        let found = table.get(id.0)?;
        found.map(|v| decode(v.value(), "download")).transpose()
    }

    /// Unlists a download with the admin's audit entry; `None` if there is no such download.
    /// The caller removes the file after.
    pub fn delete_download(
        &self,
        id: DownloadId,
        audit: &AuditEntry,
    ) -> Result<Option<Download>, StoreError> {
        let txn = self.db.begin_write()?;
        let download: Option<Download> = {
            let mut table = txn.open_table(DOWNLOADS)?;
            let removed = table.remove(id.0)?;
            removed.map(|v| decode(v.value(), "download")).transpose()?
        };
        let Some(download) = download else {
            return Ok(None);
        };
        write_audit(&txn, audit)?;
        txn.commit()?;
        Ok(Some(download))
    }
}
