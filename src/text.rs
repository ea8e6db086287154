//! Small text helpers for messages and logs. A leaf module.

/// `s` cut to `max` characters (with `…`), for echoing client input in
/// messages and logs.
pub fn short(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cuts_at_characters() {
        assert_eq!(short("abc", 3), "abc");
        assert_eq!(short("abcd", 3), "abc…");
        assert_eq!(short("ééé", 2), "éé…");
        assert_eq!(short("", 0), "");
    }
}
