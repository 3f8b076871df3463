//! The text log's fields in logfmt: `key=value`, the value quoted (`key="1m 31s"`, with `"`
//! and `\` escaped) when it holds a space, `=`, `"` or a control character, so that logfmt
//! parsers (Loki, Vector, humanlog) read `mark=… (rows at this instant …)` whole rather than
//! as a run of bare keys. The message stays first and bare, as tracing's default writes it.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The field formatter of the text log (`fmt().fmt_fields(Logfmt)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Logfmt;

impl<'w> FormatFields<'w> for Logfmt {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            writer,
            result: Ok(()),
            empty: true,
        };
        fields.record(&mut v);
        v.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    empty: bool,
}

impl Visitor<'_> {
    /// Writes one field; `quoted` says `text` is already a quoted, escaped string.
    fn write(&mut self, name: &str, text: &str, quoted: bool) {
        // Fields a `log` record carries about itself: the formatter already shows its target.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let sep = if self.empty { "" } else { " " };
        self.empty = false;
        self.result = if name == "message" {
            write!(self.writer, "{sep}{text}")
        } else if quoted {
            write!(self.writer, "{sep}{name}={text}")
        } else {
            write!(self.writer, "{sep}{name}=").and_then(|()| write_value(&mut self.writer, text))
        };
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field.name(), value, false);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        // `?string` fields come quoted and escaped by `Debug` already.
        let quoted = is_quoted(&text);
        self.write(field.name(), &text, quoted);
    }
}

/// Whether `text` is one double-quoted string whose inner quotes are all escaped.
fn is_quoted(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return false;
    };
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        // A backslash escapes the next character; a bare quote ends the string early.
        let ends_early = match c {
            '\\' => chars.next().is_none(),
            '"' => true,
            _ => false,
        };
        if ends_early {
            return false;
        }
    }
    true
}

/// A value as logfmt has it: bare when that is unambiguous, else quoted and escaped.
pub fn write_value(w: &mut impl Write, text: &str) -> fmt::Result {
    let bare = !text.is_empty()
        && !text
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if bare {
        return w.write_str(text);
    }
    w.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            '\n' => w.write_str("\\n")?,
            '\r' => w.write_str("\\r")?,
            '\t' => w.write_str("\\t")?,
            c if c.is_control() => write!(w, "\\u{{{:x}}}", c as u32)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> String {
        let mut s = String::new();
        write_value(&mut s, text).unwrap();
        s
    }

    #[test]
    fn values_are_bare_unless_they_need_quotes() {
        assert_eq!(value("customers"), "customers");
        assert_eq!(
            value("2024-03-01T09:00:00.000000Z"),
            "2024-03-01T09:00:00.000000Z"
        );
        assert_eq!(value("1m 31s 500ms"), "\"1m 31s 500ms\"");
        assert_eq!(value("a=b"), "\"a=b\"");
        assert_eq!(value(""), "\"\"");
        assert_eq!(value("say \"hi\"\\n"), "\"say \\\"hi\\\"\\\\n\"");
        assert_eq!(value("two\nlines"), "\"two\\nlines\"");
    }

    #[test]
    fn debug_strings_are_recognised_as_quoted_once() {
        assert!(is_quoted(&format!("{:?}", "a b")));
        assert!(is_quoted(&format!("{:?}", "say \"hi\"")));
        assert!(is_quoted(&format!("{:?}", "ends in \\")));
        assert!(!is_quoted("\"a\" and \"b\""));
        assert!(!is_quoted("\"open"));
        assert!(!is_quoted("plain"));
    }
}
