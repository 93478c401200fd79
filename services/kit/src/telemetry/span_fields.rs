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
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::server::RequestFields;

/// Formats span fields as one JSON object (`{"name":value,...}`), as the JSON layer expects.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanJsonFields;

/// A JSON object being written; the closing brace is added by [`JsonObject::finish`]. Strings
/// with nothing to escape (field names, and most values: methods, routes, ids) are copied as
/// they are; the others, and floats, are written by serde_json.
struct JsonObject {
    out: String,
    empty: bool,
}

impl JsonObject {
    fn new() -> Self {
        let mut out = String::with_capacity(160);
        out.push('{');
        Self { out, empty: true }
    }

    /// Continues `fields`, an object written before (fields recorded on an open span).
    fn continuing(fields: &str) -> Self {
        match fields.trim_end().strip_suffix('}') {
            Some(open) if open.trim_start().starts_with('{') => Self {
                out: open.to_owned(),
                empty: open.trim() == "{",
            },
            _ => Self::new(),
        }
    }

    fn key(&mut self, field: &Field) {
        let name = field.name();
        self.name(name.strip_prefix("r#").unwrap_or(name));
    }

    fn name(&mut self, name: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.string(name);
        self.out.push(':');
    }

    /// `value` as a JSON string.
    fn string(&mut self, value: &str) {
        if !needs_escape(value.as_bytes()) {
            self.out.push('"');
            self.out.push_str(value);
            self.out.push('"');
        } else {
            self.value(value);
        }
    }

    fn value<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        // Fails only for values JSON cannot hold, which no caller passes.
        if let Ok(text) = serde_json::to_string(value) {
            self.out.push_str(&text);
        }
    }

    fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// Whether JSON escapes any byte of `s`: a quote, a backslash or a control character. Eight
/// bytes at a time, with the word tricks of "Bit Twiddling Hacks" (every span field of every
/// request is looked at; a byte at a time cost more than writing the field).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether a byte of `x` is below `n` (exact for n <= 128; bytes of UTF-8 text above 0x7f
    // never count).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0;
    let zero_byte = |x: u64| below(x, 1);
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        if below(x, 0x20)
            || zero_byte(x ^ (ONES * u64::from(b'"')))
            || zero_byte(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        self.string(value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.string(&format!("{value:?}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
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

/// A JSON event format that gives a line logged outside any span, for the work of a request
/// with no `http` span (see [`crate::telemetry::request_spans`]), that request's fields under
/// `span`, as the span would have: `{"name":"http","service":...,"request_id":...}`.
pub struct WithRequestFields<E>(pub E);

impl<S, N, E> FormatEvent<S, N> for WithRequestFields<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let in_span =
            event.parent().is_some() || (event.is_contextual() && ctx.lookup_current().is_some());
        let request = if in_span {
            None
        } else {
            RequestFields::current_with(|fields| {
                let mut object = JsonObject::new();
                for (name, value) in fields {
                    object.name(name);
                    object.string(value);
                }
                object.finish()
            })
        };
        let Some(request) = request else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The line is one JSON object (and a newline): the request's fields go in before its
        // closing brace.
        match line.rfind('}') {
            Some(end) => {
                line.insert_str(end, &format!(",\"span\":{request}"));
                writer.write_str(&line)
            }
            None => writer.write_str(&line),
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
                big = u64::MAX,
                text = "café ☕\u{1}",
                plain = "café ☕",
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
        assert_eq!(first["big"], u64::MAX);
        assert_eq!(first["text"], "café ☕\u{1}");
        assert_eq!(first["plain"], "café ☕");
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
    fn escapes_are_found_wherever_they_are() {
        let naive = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for len in 1..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(needs_escape(&s), naive(&s), "{s:?}");
                    // Next to multi-byte text, which never needs escaping.
                    let mut t = "é".repeat(len).into_bytes();
                    t[at] = b;
                    assert_eq!(needs_escape(&t), naive(&t), "{t:?}");
                }
            }
        }
        assert!(!needs_escape(b""));
        assert!(!needs_escape(
            "0190a8f2-7c3e-7000-8000-000000000001 ~ café ☕".as_bytes()
        ));
    }

    #[test]
    fn a_span_with_no_fields_is_an_empty_object_and_takes_fields_later() {
        let mut object = JsonObject::continuing("{}");
        assert!(object.empty);
        object.out.push_str("\"a\":1");
        assert_eq!(object.finish(), "{\"a\":1}");
        assert_eq!(JsonObject::new().finish(), "{}");
        assert_eq!(JsonObject::continuing("").finish(), "{}");
    }
}
