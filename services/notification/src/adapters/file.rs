//! The file mailbox (`file://<dir>`), the embedded twin of a mail server: every message is
//! written as one `<uuid>.eml` file (lettre's file transport), which the UI's mailbox view
//! reads back.

use std::path::{Path, PathBuf};

use futures::FutureExt as _;
use futures::future::BoxFuture;
use lettre::{AsyncFileTransport, AsyncTransport, Tokio1Executor};

use super::build_message;
use crate::ports::{MailError, MailboxMessage, Mailer, OutgoingMail};

/// Largest message returned whole by [`Mailer::mailbox`].
const MAX_RAW: u64 = 256 * 1024;

pub struct FileMailer {
    dir: PathBuf,
    transport: AsyncFileTransport<Tokio1Executor>,
}

impl FileMailer {
    /// A mailbox in `dir`, created when missing.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            transport: AsyncFileTransport::new(dir),
        })
    }
}

/// The value of the first `name:` header (unfolded), empty if none.
fn header(raw: &str, name: &str) -> String {
    let mut lines = raw.lines().take_while(|l| !l.is_empty()).peekable();
    while let Some(line) = lines.next() {
        if let Some((key, value)) = line.split_once(':')
            && key.eq_ignore_ascii_case(name)
        {
            let mut value = value.trim().to_string();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return value;
        }
    }
    String::new()
}

impl Mailer for FileMailer {
    fn send<'a>(&'a self, mail: &'a OutgoingMail) -> BoxFuture<'a, Result<(), MailError>> {
        async move {
            let message = build_message(mail)?;
            self.transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError {
                    message: e.to_string(),
                    permanent: false,
                })
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            let probe = self.dir.join(".readyz");
            tokio::fs::write(&probe, b"ok")
                .await
                .map_err(|e| format!("{}: {e}", self.dir.display()))?;
            let _ = tokio::fs::remove_file(&probe).await;
            Ok(())
        }
        .boxed()
    }

    fn mailbox(&self, limit: u32) -> BoxFuture<'_, Result<Option<Vec<MailboxMessage>>, String>> {
        async move {
            let mut entries = Vec::new();
            let mut dir = tokio::fs::read_dir(&self.dir)
                .await
                .map_err(|e| e.to_string())?;
            while let Some(entry) = dir.next_entry().await.map_err(|e| e.to_string())? {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("eml") {
                    continue;
                }
                let meta = entry.metadata().await.map_err(|e| e.to_string())?;
                entries.push((meta.modified().ok(), meta.len(), path));
            }
            entries.sort_by_key(|e| std::cmp::Reverse(e.0));
            let mut out = Vec::new();
            for (_, len, path) in entries.into_iter().take(limit as usize) {
                if len > MAX_RAW {
                    continue;
                }
                let raw = tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| e.to_string())?;
                out.push(MailboxMessage {
                    file: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    subject: header(&raw, "Subject"),
                    to: header(&raw, "To"),
                    date: header(&raw, "Date"),
                    raw,
                });
            }
            Ok(Some(out))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_and_unfolded() {
        let raw =
            "Subject: Your order\r\n is confirmed\r\nTo: ann@example.com\r\n\r\nSubject: body";
        assert_eq!(header(raw, "subject"), "Your order is confirmed");
        assert_eq!(header(raw, "To"), "ann@example.com");
        assert_eq!(header(raw, "Date"), "");
    }
}
