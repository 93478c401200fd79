//! The message templates (minijinja): a subject, a plain-text and an HTML body per message.
//! Defaults are compiled in; a `templates_dir` overrides them file by file
//! (`<name>.subject.txt`, `<name>.txt`, `<name>.html`). HTML is auto-escaped; money is shown
//! with the `money` filter (`{{ order.total | money }}`).

use std::path::Path;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, Error, ErrorKind};

use super::money::format_money;
use super::plan::TemplateKind;

/// The compiled-in default of every template file.
const DEFAULTS: [(&str, &str); 15] = [
    (
        "order_confirmation.subject.txt",
        include_str!("../../templates/order_confirmation.subject.txt"),
    ),
    (
        "order_confirmation.txt",
        include_str!("../../templates/order_confirmation.txt"),
    ),
    (
        "order_confirmation.html",
        include_str!("../../templates/order_confirmation.html"),
    ),
    (
        "partner_assigned.subject.txt",
        include_str!("../../templates/partner_assigned.subject.txt"),
    ),
    (
        "partner_assigned.txt",
        include_str!("../../templates/partner_assigned.txt"),
    ),
    (
        "partner_assigned.html",
        include_str!("../../templates/partner_assigned.html"),
    ),
    (
        "out_for_delivery.subject.txt",
        include_str!("../../templates/out_for_delivery.subject.txt"),
    ),
    (
        "out_for_delivery.txt",
        include_str!("../../templates/out_for_delivery.txt"),
    ),
    (
        "out_for_delivery.html",
        include_str!("../../templates/out_for_delivery.html"),
    ),
    (
        "delivered.subject.txt",
        include_str!("../../templates/delivered.subject.txt"),
    ),
    (
        "delivered.txt",
        include_str!("../../templates/delivered.txt"),
    ),
    (
        "delivered.html",
        include_str!("../../templates/delivered.html"),
    ),
    (
        "cancelled.subject.txt",
        include_str!("../../templates/cancelled.subject.txt"),
    ),
    (
        "cancelled.txt",
        include_str!("../../templates/cancelled.txt"),
    ),
    (
        "cancelled.html",
        include_str!("../../templates/cancelled.html"),
    ),
];

/// One rendered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template {file}: {source}")]
    Syntax {
        file: String,
        #[source]
        source: Error,
    },
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

/// `{{ money_value | money }}`: `{minor, currency}` → `€12.34`.
fn money(value: Value) -> Result<String, Error> {
    let bad = || Error::new(ErrorKind::InvalidOperation, "money needs {minor, currency}");
    let minor = i64::try_from(value.get_attr("minor").map_err(|_| bad())?).map_err(|_| bad())?;
    let currency = value.get_attr("currency").map_err(|_| bad())?;
    let currency = currency.as_str().ok_or_else(bad)?;
    Ok(format_money(minor, currency))
}

impl Templates {
    /// The defaults, each replaced by `<dir>/<file>` when that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.add_filter("money", money);
        for (file, default) in DEFAULTS {
            let source = match dir.map(|d| d.join(file)).filter(|p| p.is_file()) {
                Some(path) => {
                    std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                        file: path.display().to_string(),
                        source,
                    })?
                }
                None => default.to_string(),
            };
            env.add_template_owned(file.to_string(), source)
                .map_err(|source| TemplateError::Syntax {
                    file: file.to_string(),
                    source,
                })?;
        }
        Ok(Self { env })
    }

    /// Renders the subject (first line, trimmed), text and HTML of `kind`.
    pub fn render(
        &self,
        kind: TemplateKind,
        context: &serde_json::Value,
    ) -> Result<Rendered, Error> {
        let ctx = Value::from(Serde(context));
        let render = |suffix: &str| {
            self.env
                .get_template(&format!("{}.{suffix}", kind.name()))?
                .render(ctx.clone())
        };
        let subject = render("subject.txt")?;
        Ok(Rendered {
            subject: subject
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            text: render("txt")?,
            html: render("html")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::order::OrderSnapshot;
    use crate::domain::plan::{context, plan};
    use serde_json::json;
    use storefront_kit::event::Envelope;

    fn order() -> OrderSnapshot {
        OrderSnapshot::from_data(&json!({
            "order_id": "o-42", "user_id": "u-1",
            "customer": {"name": "Ann <Admin>", "email": "ann@example.com"},
            "shipping": {"name": "Ann", "line1": "Str 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
            "lines": [
                {"sku": "L-1", "title": "Lamp", "quantity": 2,
                 "unit_price": {"minor": 1999, "currency": "EUR"}, "line_total": {"minor": 3998, "currency": "EUR"}},
                {"sku": "B-1", "title": "Bulb", "quantity": 1,
                 "unit_price": {"minor": 250, "currency": "EUR"}, "line_total": {"minor": 250, "currency": "EUR"}}
            ],
            "item_count": 3, "total": {"minor": 4248, "currency": "EUR"}
        }))
        .expect("order")
    }

    fn plan_of(event_type: &str, data: serde_json::Value) -> crate::domain::plan::Plan {
        plan(&Envelope::new(event_type, "x", "o-42", data))
            .expect("valid")
            .expect("plan")
    }

    #[test]
    fn confirmation_lists_lines_and_totals_in_both_parts() {
        let t = Templates::load(None).expect("defaults compile");
        let p = plan_of(
            "OrderConfirmed",
            serde_json::to_value(order()).expect("json"),
        );
        let m = t
            .render(TemplateKind::OrderConfirmation, &context(&order(), &p))
            .expect("render");
        assert_eq!(m.subject, "Your order o-42 is confirmed");
        assert!(m.text.contains("Hello Ann <Admin>,"), "{}", m.text);
        assert!(
            m.text.contains("2 x Lamp (L-1) at €19.99 = €39.98"),
            "{}",
            m.text
        );
        assert!(m.text.contains("Total: €42.48"), "{}", m.text);
        assert!(
            m.html.contains("Ann &lt;Admin&gt;"),
            "HTML is escaped: {}",
            m.html
        );
        assert!(
            m.html.contains("€42.48") && m.html.contains("10115 Berlin"),
            "{}",
            m.html
        );
    }

    #[test]
    fn every_message_renders_with_partner_and_reason() {
        let t = Templates::load(None).expect("defaults compile");
        let partner = json!({"id": "p-1", "name": "Rita Rider", "email": "rita@partners.test", "phone": "+49 30 1"});
        for kind in TemplateKind::ALL {
            let p = crate::domain::plan::Plan {
                remember: None,
                send: Some(kind),
                order_id: "o-42".into(),
                fallback: None,
                partner: Some(partner.clone()),
                reason: Some("out of stock".into()),
            };
            let m = t.render(kind, &context(&order(), &p)).expect("render");
            assert!(m.subject.contains("o-42"), "{kind:?}: {}", m.subject);
            assert!(!m.text.is_empty() && m.html.contains("<html>"), "{kind:?}");
            if matches!(kind, TemplateKind::PartnerAssigned) {
                assert!(
                    m.text.contains("Rita Rider")
                        && m.text.contains("rita@partners.test")
                        && m.text.contains("+49 30 1")
                );
            }
            if matches!(kind, TemplateKind::Cancelled) {
                assert!(m.text.contains("cancelled: out of stock"), "{}", m.text);
            }
        }
    }

    #[test]
    fn a_directory_overrides_single_files_and_bad_syntax_fails_at_load() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("delivered.subject.txt"),
            "Delivered: {{ order.id | upper }}",
        )
        .expect("write");
        let t = Templates::load(Some(dir.path())).expect("load");
        let p = plan_of(
            "DeliveryDelivered",
            json!({"order_id": "o-42", "partner": {"name": "Rita"}}),
        );
        let m = t
            .render(TemplateKind::Delivered, &context(&order(), &p))
            .expect("render");
        assert_eq!(m.subject, "Delivered: O-42");
        assert!(
            m.text.contains("Rita has delivered"),
            "the default text stays: {}",
            m.text
        );

        std::fs::write(dir.path().join("cancelled.html"), "{% if %}").expect("write");
        let err = Templates::load(Some(dir.path()))
            .err()
            .expect("syntax error");
        assert!(err.to_string().contains("cancelled.html"), "{err}");
    }
}
