//! The Readwise access token, redacted whenever it is printed.

use std::fmt;

/// A Readwise access token. `Debug` and `Display` print `Token(****abcd)` (the last four
/// characters, and only for tokens of at least 12 characters; shorter ones print
/// `Token(****)`), so a token that ends up in a log line or an error message is not leaked.
/// The secret is reachable only through [`Token::expose_secret`]. It is deliberately not
/// `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token; surrounding whitespace (e.g. the newline of `--token-stdin`) is
    /// trimmed.
    pub fn new(secret: impl Into<String>) -> Self {
        let s: String = secret.into();
        let trimmed = s.trim();
        if trimmed.len() == s.len() {
            Token(s)
        } else {
            Token(trimmed.to_string())
        }
    }

    /// The secret itself, for the `Authorization` header or the keychain.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the token is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The redacted form, `****abcd`.
    pub fn redacted(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() >= 12 {
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("****{tail}")
        } else {
            "****".to_string()
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.redacted())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.redacted())
    }
}

impl From<String> for Token {
    fn from(s: String) -> Self {
        Token::new(s)
    }
}

impl From<&str> for Token {
    fn from(s: &str) -> Self {
        Token::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let t = Token::new("abcdefghijklmnopqrstuvwxyzSECRET1234\n");
        assert_eq!(format!("{t:?}"), "Token(****1234)");
        assert_eq!(format!("{t}"), "Token(****1234)");
        assert_eq!(format!("{:?}", Some(&t)), "Some(Token(****1234))");
        assert_eq!(t.expose_secret(), "abcdefghijklmnopqrstuvwxyzSECRET1234");
    }

    #[test]
    fn short_tokens_print_nothing_of_the_secret() {
        assert_eq!(format!("{:?}", Token::new("abc12345")), "Token(****)");
        assert_eq!(format!("{}", Token::new("")), "Token(****)");
        assert!(Token::new("  ").is_empty());
    }
}
