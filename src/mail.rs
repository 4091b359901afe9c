//! Mail: delivers the messages queued in the store, through the configured transport.
//!
//! Owns: the transport (an outbox folder of .eml files, or an SMTP server via lettre), the
//! delivery loop and the admin's test mail (rate-limited per address like every mail the site
//! sends). Calls: store (the queue, the log of delivered mail), config, limits, accounts'
//! address rule, i18n (the test mail's words). Request handlers never send mail themselves:
//! they queue it in the same transaction as the change that causes it and call [`Mailer::wake`];
//! the loop delivers it, and on failure keeps it queued and retries with doubling back-off, also
//! after a restart, so a verification mail is never lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{EmailConfig, LimitsConfig, MailTransport, SmtpSecurity};
use crate::i18n::Lang;
use crate::limits::{Key, RateLimiter, RetryAfter};
use crate::model::{AuditEntry, MailId, QueuedMail, SentMail};
use crate::store::{unix_now, MailDraft, Store, StoreError, MAIL_SENT_KEPT};

/// With nothing due, the loop still looks at the queue this often (mail queued by another path
/// than `wake`, clock changes).
const IDLE_RECHECK: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("email.smtp: cannot set up the SMTP transport for {host}: {detail}")]
    Smtp { host: String, detail: String },
    #[error("cannot create the mail outbox {path}: {source}")]
    Outbox {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidAddress(String),
    #[error("There is no such mail in the queue or in the log of sent mail.")]
    NoSuchMail,
    #[error("Too many mails to this address; try again in {} seconds.", .0.as_secs())]
    RateLimited(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RetryAfter> for MailError {
    fn from(retry: RetryAfter) -> Self {
        MailError::RateLimited(retry.0)
    }
}

/// A message the mail page opens.
#[derive(Debug, Clone)]
pub enum Opened {
    Queued(QueuedMail),
    Sent(SentMail),
}

enum Transport {
    /// Writes each message as `<dir>/<id>.eml`.
    Outbox(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

pub struct Mailer {
    store: Store,
    from: Mailbox,
    transport: Transport,
    /// Test mails per address, under the same `limits.email_*` settings as verification mails.
    per_address: RateLimiter,
    retry_min: u64,
    retry_max: u64,
    wake: Notify,
}

impl Mailer {
    pub fn new(
        config: &EmailConfig,
        limits: &LimitsConfig,
        data_dir: &std::path::Path,
        store: Store,
    ) -> Result<Mailer, MailError> {
        let from = config
            .from
            .parse()
            .expect("config validation checked that email.from is a mailbox");
        let transport = match config.transport {
            MailTransport::Outbox => {
                let dir = data_dir.join("outbox");
                std::fs::create_dir_all(&dir).map_err(|source| MailError::Outbox {
                    path: dir.clone(),
                    source,
                })?;
                Transport::Outbox(dir)
            }
            MailTransport::Smtp => Transport::Smtp(smtp_transport(config)?),
        };
        Ok(Mailer {
            store,
            from,
            transport,
            per_address: RateLimiter::new(
                limits.email_per_address,
                Duration::from_secs(limits.email_window_secs),
                limits.max_tracked_keys,
            ),
            retry_min: config.retry_min_secs,
            retry_max: config.retry_max_secs,
            wake: Notify::new(),
        })
    }

    /// Tells the delivery loop that new mail is queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The configured transport.
    pub fn transport(&self) -> MailTransport {
        match self.transport {
            Transport::Outbox(_) => MailTransport::Outbox,
            Transport::Smtp(_) => MailTransport::Smtp,
        }
    }

    /// The queued messages (oldest first) and the latest delivered ones (newest first).
    pub async fn overview(&self) -> Result<(Vec<QueuedMail>, Vec<SentMail>), MailError> {
        Ok(self
            .store
            .run(|s| Ok((s.queued_mail()?, s.sent_mail(MAIL_SENT_KEPT)?)))
            .await?)
    }

    /// One message, queued or delivered. Its text only with the outbox transport, whose files
    /// hold it anyway: with SMTP a verification link is for its recipient alone.
    pub async fn open(&self, id: MailId) -> Result<Opened, MailError> {
        let outbox = matches!(self.transport, Transport::Outbox(_));
        let found = self
            .store
            .run(move |s| match s.queued(id)? {
                Some(mail) => Ok(Some(Opened::Queued(mail))),
                None => Ok(s.sent(id)?.map(Opened::Sent)),
            })
            .await?;
        let mut opened = found.ok_or(MailError::NoSuchMail)?;
        if !outbox {
            match &mut opened {
                Opened::Queued(mail) => mail.text.clear(),
                Opened::Sent(mail) => mail.text = None,
            }
        }
        Ok(opened)
    }

    /// Queues a test mail to `to` for an admin, in the admin's language `lang`, with its audit
    /// entry; delivered (or retried) like any other.
    pub async fn send_test(
        &self,
        to: &str,
        audit: AuditEntry,
        lang: Lang,
    ) -> Result<MailId, MailError> {
        let to = to.trim();
        crate::accounts::validate::email(to).map_err(MailError::InvalidAddress)?;
        self.per_address
            .check(Key::of(&[to.to_lowercase().as_bytes()]))?;
        let draft = MailDraft {
            to: to.to_owned(),
            subject: lang.t("mail.test.subject").to_owned(),
            text: lang.fill("mail.test.text", &[("admin", &audit.admin)]),
        };
        let mail = self
            .store
            .run(move |s| s.enqueue_audited(draft, unix_now(), &audit))
            .await?;
        self.wake();
        Ok(mail.id)
    }

    /// The delivery loop: runs until `shutdown` is cancelled. Whatever is still queued then is
    /// delivered after the next start.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next_due = self.deliver_due().await;
            let pause = next_due
                .map(|at| Duration::from_secs(at.saturating_sub(unix_now())))
                .unwrap_or(IDLE_RECHECK)
                .min(IDLE_RECHECK);
            self.per_address.sweep();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Attempts every due message once; returns when the next one falls due.
    async fn deliver_due(&self) -> Option<u64> {
        let queued = match self.store.run(|store| store.queued_mail()).await {
            Ok(queued) => queued,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the mail queue");
                return Some(unix_now() + self.retry_min);
            }
        };
        let mut next_due: Option<u64> = None;
        for mail in queued {
            let now = unix_now();
            let due_at = if mail.next_attempt_at <= now {
                self.attempt(mail).await
            } else {
                Some(mail.next_attempt_at)
            };
            next_due = match (next_due, due_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next_due
    }

    /// One delivery attempt. Returns when to try again, or `None` once delivered.
    async fn attempt(&self, mail: QueuedMail) -> Option<u64> {
        let id = mail.id;
        match self.send(&mail).await {
            Ok(()) => {
                tracing::info!(mail = %id, to = %mail.to, subject = %mail.subject, "mail delivered");
                let keep_text = matches!(self.transport, Transport::Outbox(_));
                let delivered = self
                    .store
                    .run(move |s| s.mail_delivered(id, unix_now(), keep_text))
                    .await;
                if let Err(e) = delivered {
                    tracing::error!(mail = %id, error = %e, "delivered, but cannot remove it from the queue");
                }
                None
            }
            Err(error) => {
                let delay = backoff(self.retry_min, self.retry_max, mail.attempts);
                let next = unix_now() + delay;
                tracing::warn!(
                    mail = %id,
                    to = %mail.to,
                    attempts = mail.attempts + 1,
                    retry_in_secs = delay,
                    %error,
                    "mail delivery failed; it stays queued and will be retried"
                );
                let stored = self
                    .store
                    .run(move |s| s.mail_failed(id, &error, next))
                    .await;
                if let Err(e) = stored {
                    tracing::error!(mail = %id, error = %e, "cannot record the failed attempt");
                }
                Some(next)
            }
        }
    }

    async fn send(&self, mail: &QueuedMail) -> Result<(), String> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| format!("bad recipient address: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text.clone())
            .map_err(|e| format!("cannot build the message: {e}"))?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Transport::Outbox(dir) => {
                let path = dir.join(format!("{:08}.eml", mail.id.0));
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || std::fs::write(&path, bytes))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot write to the outbox: {e}"))?;
                for link in mail.text.lines().filter(|l| l.contains("://")) {
                    tracing::info!(to = %mail.to, link = link.trim(), "mail written to the outbox");
                }
                Ok(())
            }
        }
    }
}

fn smtp_transport(config: &EmailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let smtp = &config.smtp;
    let fail = |e: lettre::transport::smtp::Error| MailError::Smtp {
        host: smtp.host.clone(),
        detail: e.to_string(),
    };
    let builder = match smtp.security {
        SmtpSecurity::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(fail)?
        }
        SmtpSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(fail)?
        }
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
    if !smtp.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            smtp.username.clone(),
            smtp.password.clone(),
        ));
    }
    Ok(builder.build())
}

/// Seconds to wait after the `attempts`-th failure: `min` doubling each time, at most `max`.
fn backoff(min: u64, max: u64, attempts: u32) -> u64 {
    min.saturating_mul(1u64 << attempts.min(32)).min(max)
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let waits: Vec<u64> = (0..6).map(|n| backoff(5, 60, n)).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff(5, 900, 200), 900);
    }
}
