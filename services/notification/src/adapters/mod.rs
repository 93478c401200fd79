//! Backends of the notification service, one module per engine: the store in [`mysql`] or
//! [`sqlite`] (one SQL implementation in `sql`), the mailer over [`smtp`] or into a [`file`]
//! mailbox.

pub mod file;
pub mod mysql;
pub mod smtp;
mod sql;
pub mod sqlite;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

use crate::ports::{MailError, OutgoingMail};

/// The MIME message: multipart/alternative with the plain text first, then the HTML.
pub fn build_message(mail: &OutgoingMail) -> Result<Message, MailError> {
    let permanent = |what: &str, e: &dyn std::fmt::Display| MailError {
        message: format!("{what}: {e}"),
        permanent: true,
    };
    let from: Mailbox = mail
        .from
        .parse()
        .map_err(|e| permanent("from address", &e))?;
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| permanent("recipient address", &e))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(mail.message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| permanent("message", &e))
}
