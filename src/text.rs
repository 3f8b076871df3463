//! Text helpers shared by errors, logs and status lines; depends on nothing in the crate.

/// Collapses whitespace (newlines included) so a message fits one log line or `STATUS=`.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_every_run_of_whitespace() {
        assert_eq!(one_line("  a\n\tb   c \r\n"), "a b c");
        assert_eq!(one_line(""), "");
    }
}
