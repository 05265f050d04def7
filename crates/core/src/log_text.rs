//! Text from outside made safe for the server log: [`log_safe`] for a quoted value, short;
//! [`escape_log_text`] for a whole text (URLs, error bodies, directory answers).

/// A claim value made safe for a log line: control characters replaced, quotes escaped,
/// at most 128 characters.
/// A claim value made safe for a log line: control characters replaced, quotes escaped,
pub fn log_safe(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 128 {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Text from outside (an identity provider's URLs, error bodies, directory answers) made safe
/// for the server log, whole: every control character becomes a visible escape (`\n`,
/// `\u{1b}`), so nothing from outside can start a log line of its own.
pub fn escape_log_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_never_starts_a_log_line() {
        let text = "bad\n2026-11-23 LOG:  forged\r\u{1b}[31m\u{85}end\ttab";
        let safe = escape_log_text(text);
        assert!(!safe.chars().any(char::is_control), "{safe}");
        assert_eq!(
            safe,
            "bad\\n2026-11-23 LOG:  forged\\r\\u{1b}[31m\\u{85}end\\ttab"
        );
        assert_eq!(
            escape_log_text("https://ok.example/keys"),
            "https://ok.example/keys"
        );
    }

    #[test]
    fn log_safe_escapes_and_truncates() {
        assert_eq!(log_safe("a\nb\"c"), "a?b\\\"c");
        assert_eq!(log_safe(&"x".repeat(500)).len(), 131);
    }
}
