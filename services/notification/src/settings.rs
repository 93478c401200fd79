//! Settings of the notification service (`[notification]` in the settings file, `STOREFRONT_NOTIFICATION__*` in
//! the environment).

use std::path::Path;

use serde::Deserialize;
use storefront_kit::backend::{BackendUrl, EventsUrl, MailUrl, SqlUrl};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8086";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// database backend; embedded default when unset.
    pub database_url: Option<SqlUrl>,
    /// events backend; embedded default when unset.
    pub events_url: Option<EventsUrl>,
    /// mail backend; embedded default when unset.
    pub mail_url: Option<MailUrl>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_string(),
            database_url: None,
            events_url: None,
            mail_url: None,
        }
    }
}

impl Settings {
    /// The database backend: the configured URL, or `sqlite://<data-dir>/notification.db`.
    pub fn database(&self, data_dir: &Path) -> SqlUrl {
        self.database_url
            .clone()
            .unwrap_or_else(|| SqlUrl::embedded_path("sqlite", &data_dir.join("notification.db")))
    }

    /// The events backend: the configured URL, or `memory://`.
    pub fn events(&self, _data_dir: &Path) -> EventsUrl {
        self.events_url.clone().unwrap_or_else(EventsUrl::in_memory)
    }

    /// The mail backend: the configured URL, or `file://<data-dir>/mailbox`.
    pub fn mail(&self, data_dir: &Path) -> MailUrl {
        self.mail_url
            .clone()
            .unwrap_or_else(|| MailUrl::embedded_path("file", &data_dir.join("mailbox")))
    }

    /// Every backend with the name `/readyz` reports it under.
    pub fn backends(&self, data_dir: &Path) -> Vec<(&'static str, BackendUrl)> {
        vec![
            ("database", BackendUrl::clone(&self.database(data_dir))),
            ("events", BackendUrl::clone(&self.events(data_dir))),
            ("mail", BackendUrl::clone(&self.mail(data_dir))),
        ]
    }
}
