//! [`error_chain`]: an error and its sources on one line, the way `{:#}` shows an
//! `anyhow` error at the top, for library code that logs an error (as a `tracing`
//! field) or keeps one as text, and so has no `anyhow` to do it.

use std::error::Error;

/// `err` and each of its sources in turn, joined by `": "`.
pub fn error_chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the accounts")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_every_source() {
        let inner = std::io::Error::other("connection refused");
        assert_eq!(
            error_chain(&Outer(inner)),
            "cannot read the accounts: connection refused"
        );
    }

    #[test]
    fn an_error_without_sources_is_its_message() {
        assert_eq!(error_chain(&std::io::Error::other("gone")), "gone");
    }
}
