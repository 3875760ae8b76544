//! Structured logs: one logfmt line per event on stderr
//! (`ts=… level=info event=camera_started camera=cam-1 uri="rtsp://…"`), so
//! that journald, Loki or grep read them alike. Callers pass redacted values
//! only (camera URIs through `CameraUri::redacted`).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub enum Level {
    Info,
    Warn,
}

pub fn event(level: Level, event: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let level = match level {
        Level::Info => "info",
        Level::Warn => "warn",
    };
    let mut line = format!("ts={ts:.3} level={level} event={event}");
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        line.push_str(&quote(&value.to_string()));
    }
    line.push('\n');
    // One write per line: lines of concurrent cameras do not interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `text` with every control character (ESC, CR, …) written as an escape
/// (`\x1b`, `\r`), so that a value from outside (a file name, a server's
/// error) cannot move a terminal's cursor or forge a log line.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            // Characters that reorder or hide text (bidirectional overrides,
            // zero-width ones, line separators): shown as escapes too.
            c if is_format(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Unicode format and separator characters that change how text around
/// them reads.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

fn quote(v: &str) -> String {
    if !v.is_empty()
        && !v.contains(|c: char| {
            c.is_whitespace() || c.is_control() || is_format(c) || c == '"' || c == '='
        })
    {
        return v.to_string();
    }
    let escaped = printable(&v.replace('\\', "\\\\").replace('"', "\\\""));
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_quoted_when_needed() {
        assert_eq!(super::quote("cam-1"), "cam-1");
        assert_eq!(super::quote("a b \"c\""), "\"a b \\\"c\\\"\"");
        assert_eq!(super::quote(""), "\"\"");
        assert_eq!(
            super::quote("/tmp/a\x1b[2J\rlevel=info"),
            "\"/tmp/a\\x1b[2J\\rlevel=info\""
        );
        assert_eq!(super::quote("a\u{9b}b"), "\"a\\x9bb\"");
        assert_eq!(
            super::quote("rtsp://a/\u{202e}x"),
            "\"rtsp://a/\\u{202e}x\""
        );
    }
}
