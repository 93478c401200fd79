//! Mail over SMTP (`smtp://host:port`, `smtps://host:port`; `?tls=required` or
//! `?tls=opportunistic` for STARTTLS; credentials in the URL): a pooled lettre transport with
//! a per-command timeout.

use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::build_message;
use crate::ports::{MailError, MailboxMessage, Mailer, OutgoingMail};

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpMailer {
    pub fn new(url: &str, timeout: Duration, pool_size: u32) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| e.to_string())?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(pool_size.max(1)))
            .build();
        Ok(Self { transport })
    }
}

impl Mailer for SmtpMailer {
    fn send<'a>(&'a self, mail: &'a OutgoingMail) -> BoxFuture<'a, Result<(), MailError>> {
        async move {
            let message = build_message(mail)?;
            self.transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError {
                    message: e.to_string(),
                    permanent: e.is_permanent(),
                })
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        async move {
            match self.transport.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err("the mail server did not answer NOOP".into()),
                Err(e) => Err(e.to_string()),
            }
        }
        .boxed()
    }

    fn mailbox(&self, _limit: u32) -> BoxFuture<'_, Result<Option<Vec<MailboxMessage>>, String>> {
        async { Ok(None) }.boxed()
    }
}
