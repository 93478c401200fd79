//! Span fields for the JSON log lines, formatted cheaply.
//!
//! The JSON layer formats a span's fields when the span opens and keeps the text. Every HTTP
//! request opens one span, and most requests never log a line in it. tracing-subscriber's
//! own `JsonFields` builds a map of JSON values and serializes it for every span.
//! [`SpanJsonFields`] writes the same JSON object straight into the span's text.
//! Measured in bench/gateway, the request span was the largest piece of the gateway's own
//! cost.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Formats span fields as one JSON object (`{"name":value,...}`), as the JSON layer expects.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanJsonFields;

/// A JSON object being written; the closing brace is added by [`JsonObject::finish`]. Keys
/// and values are written by serde_json, so they are escaped as JSON wants.
struct JsonObject {
    out: Vec<u8>,
    empty: bool,
}

impl JsonObject {
    fn new() -> Self {
        let mut out = Vec::with_capacity(160);
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Continues `fields`, an object written before (fields recorded on an open span).
    fn continuing(fields: &str) -> Self {
        match fields.trim_end().strip_suffix('}') {
            Some(open) if open.trim_start().starts_with('{') => Self {
                out: open.as_bytes().to_vec(),
                empty: open.trim() == "{",
            },
            _ => Self::new(),
        }
    }

    fn key(&mut self, field: &Field) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        let name = field.name();
        self.value(name.strip_prefix("r#").unwrap_or(name));
        self.out.push(b':');
    }

    fn value<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        // Writing into a Vec fails only for values JSON cannot hold, which no caller passes.
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    fn finish(mut self) -> String {
        self.out.push(b'}');
        // serde_json writes UTF-8, and a continued object was a `str`.
        String::from_utf8(self.out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.value(value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.value(&format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.value(&value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.value(&value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.value(&value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            self.value(&value);
        } else {
            // JSON has no NaN or infinity: as the text, like a debug value.
            self.value(&value.to_string());
        }
    }
}

impl<'writer> FormatFields<'writer> for SpanJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut object = JsonObject::new();
        fields.record(&mut object);
        writer.write_str(&object.finish())
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let mut object = JsonObject::continuing(&current.fields);
        fields.record(&mut object);
        current.fields = object.finish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::CapturedLogs;

    #[test]
    fn log_lines_carry_the_span_fields_as_json_also_after_a_record() {
        let logs = CapturedLogs::start();
        {
            let span = tracing::info_span!(
                "http",
                service = "gateway",
                method = %"GET",
                route = "/api/\"x\"\\y\n",
                status = tracing::field::Empty,
                r#type = 7_u64,
                delta = -3_i64,
                ok = true,
                ratio = 0.5_f64,
                nan = f64::NAN,
            );
            let _entered = span.enter();
            tracing::warn!("first");
            span.record("status", 503_u64);
            tracing::warn!("second");
        }
        let events = logs.events();
        assert_eq!(events.len(), 2, "{events:?}");
        let first = &events[0]["span"];
        assert_eq!(first["service"], "gateway");
        assert_eq!(first["method"], "GET");
        assert_eq!(first["route"], "/api/\"x\"\\y\n");
        assert_eq!(first["type"], 7);
        assert_eq!(first["delta"], -3);
        assert_eq!(first["ok"], true);
        assert_eq!(first["ratio"], 0.5);
        assert_eq!(first["nan"], "NaN");
        assert_eq!(first["name"], "http");
        assert!(first.get("status").is_none());
        let second = &events[1]["span"];
        assert_eq!(second["status"], 503);
        assert_eq!(second["route"], "/api/\"x\"\\y\n");
    }

    #[test]
    fn a_span_with_no_fields_is_an_empty_object_and_takes_fields_later() {
        let mut object = JsonObject::continuing("{}");
        assert!(object.empty);
        object.out.extend_from_slice(b"\"a\":1");
        assert_eq!(object.finish(), "{\"a\":1}");
        assert_eq!(JsonObject::new().finish(), "{}");
        assert_eq!(JsonObject::continuing("").finish(), "{}");
    }
}
