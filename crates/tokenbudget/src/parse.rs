//! Reading a store URL: its scheme, the feature that compiles in a built-in scheme's store,
//! and a form of the URL that is safe to print.

use crate::error::{Error, Result};

/// The built-in schemes that need a Cargo feature: scheme, feature, whether this build has it.
///
/// Like object_store's `parse.rs`, a built-in scheme whose feature is off is still known, so
/// the error can name the feature instead of calling the scheme unknown. (`memory` needs no
/// feature.)
const GATED: &[(&str, &str, bool)] = &[
    ("sqlite", "sqlite", cfg!(feature = "sqlite")),
    ("postgres", "postgres", cfg!(feature = "postgres")),
    ("postgresql", "postgres", cfg!(feature = "postgres")),
];

/// The feature a built-in `scheme` needs and whether this build has it; `None` for a scheme
/// that needs none or is not built in.
pub(crate) fn builtin_feature(scheme: &str) -> Option<(&'static str, bool)> {
    GATED
        .iter()
        .find(|(s, _, _)| *s == scheme)
        .map(|&(_, feature, enabled)| (feature, enabled))
}

/// The scheme of `url`, lowercased: what comes before the first `:`.
///
/// `sqlite::memory:` has the scheme `sqlite`, `postgresql://h/db` has `postgresql`.
pub(crate) fn scheme(url: &str) -> Result<String> {
    let Some((scheme, _)) = url.split_once(':') else {
        return Err(invalid(
            url,
            "expected `scheme:…`, such as memory://, sqlite://path.db, sqlite::memory: or postgres://host/db",
        ));
    };
    if !is_scheme(scheme) {
        return Err(invalid(
            url,
            "the scheme must start with a letter and hold only letters, digits, `+`, `-` and `.`",
        ));
    }
    Ok(scheme.to_ascii_lowercase())
}

/// True for an RFC 3986 scheme: a letter, then letters, digits, `+`, `-`, `.`.
pub(crate) fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// [`Error::InvalidUrl`] for `url`, its password hidden.
pub(crate) fn invalid(url: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        url: redact(url),
        reason: reason.into(),
    }
}

/// `url` with its passwords replaced by `***`, so errors and logs never show them: the one in
/// the authority (`scheme://user:password@host`) and the value of every query parameter whose
/// name ends in `password` (`?password=…`, `&sslpassword=…`, any case).
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = redact_authority(head);
    if let Some(query) = query {
        let (query, fragment) = match query.split_once('#') {
            Some((query, fragment)) => (query, Some(fragment)),
            None => (query, None),
        };
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().ends_with("password") => {
                    format!("{name}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    }
    out
}

/// `url` (with no query) with the authority's password replaced by `***`.
fn redact_authority(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[start..];
    let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}***{}",
        &url[..start],
        &authority[..=colon],
        &url[start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_read_and_lowercased() {
        assert_eq!(scheme("memory://").unwrap(), "memory");
        assert_eq!(scheme("sqlite::memory:").unwrap(), "sqlite");
        assert_eq!(scheme("SQLite://a.db").unwrap(), "sqlite");
        assert_eq!(scheme("postgresql://u@h/db").unwrap(), "postgresql");
        assert_eq!(scheme("my-store+v2://x").unwrap(), "my-store+v2");
        assert!(matches!(
            scheme("budgets.db"),
            Err(Error::InvalidUrl { .. })
        ));
        assert!(matches!(scheme("://x"), Err(Error::InvalidUrl { .. })));
        assert!(matches!(scheme("1db://x"), Err(Error::InvalidUrl { .. })));
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://app:s3cret@db.internal:5432/budgets?sslmode=require"),
            "postgres://app:***@db.internal:5432/budgets?sslmode=require"
        );
        assert_eq!(
            redact("postgres://app:p@ss@h/db"),
            "postgres://app:***@h/db",
            "the last `@` of the authority ends the user info"
        );
        assert_eq!(redact("postgres://app@h/db"), "postgres://app@h/db");
        assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
        assert_eq!(redact("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(redact("postgres://h/db?x=a:b@c"), "postgres://h/db?x=a:b@c");
        assert_eq!(
            redact("postgres://h/db?user=app&password=s3cret&schema=x"),
            "postgres://h/db?user=app&password=***&schema=x"
        );
        assert_eq!(
            redact("postgresql://u:p@h/db?PASSWORD=a&sslpassword=b#frag"),
            "postgresql://u:***@h/db?PASSWORD=***&sslpassword=***#frag"
        );
        assert_eq!(
            redact("postgres://h/db?password"),
            "postgres://h/db?password"
        );
    }

    #[test]
    fn builtin_features_follow_the_build() {
        assert_eq!(builtin_feature("memory"), None);
        assert_eq!(builtin_feature("custom"), None);
        assert_eq!(
            builtin_feature("sqlite"),
            Some(("sqlite", cfg!(feature = "sqlite")))
        );
        assert_eq!(
            builtin_feature("postgresql"),
            Some(("postgres", cfg!(feature = "postgres")))
        );
    }
}
