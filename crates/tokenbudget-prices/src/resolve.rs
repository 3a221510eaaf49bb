//! Model names as users type them → the names a price table uses.
//!
//! Pure functions over strings; [`PriceTable`](crate::PriceTable) looks the candidates up.

/// Routing prefixes stripped before looking a model up: `anthropic/claude-…`,
/// `openai/gpt-…`, LiteLLM's `bedrock/converse/…` and `vertex_ai/…`.
const PREFIXES: [&str; 6] = [
    "anthropic/",
    "openai/",
    "bedrock/",
    "converse/",
    "invoke/",
    "vertex_ai/",
];

/// Bedrock's cross-region inference prefixes (`us.anthropic.claude-…`).
const REGIONS: [&str; 7] = ["us.", "eu.", "apac.", "global.", "jp.", "au.", "us-gov."];

/// The names to try for `model` exactly, most specific first. Every candidate is lowercase.
///
/// # Behavior
///
/// - The name as given (trimmed, lowercased) comes first, so a table may price any spelling.
/// - Then the plain model id: routing prefixes (`anthropic/`, `openai/`, `bedrock/`,
///   `vertex_ai/`) removed; Bedrock ids without their region and `anthropic.` prefix and
///   `-v1:0` suffix (`us.anthropic.claude-sonnet-4-5-20250929-v1:0` →
///   `claude-sonnet-4-5-20250929`); Vertex ids with `@DATE` as `-DATE` and `@default`
///   dropped; dots in Claude names as dashes (`claude-sonnet-4.5` → `claude-sonnet-4-5`).
/// - Then, for a dated id (`-20250929`, `-2024-08-06`), the undated alias; for a `-latest`
///   id, the id without it.
///
/// When none of these is in the table, an undated id is tried as its newest dated entry, and
/// then as its [`latest_alias`].
pub(crate) fn candidates(model: &str) -> Vec<String> {
    let given = model.trim().to_ascii_lowercase();
    let plain = plain_id(&given);
    let mut out = vec![given];
    push_unique(&mut out, plain.clone());
    if let Some(undated) = strip_date(&plain) {
        push_unique(&mut out, undated.to_owned());
    } else if let Some(base) = plain.strip_suffix("-latest") {
        push_unique(&mut out, base.to_owned());
    }
    out
}

/// `<id>-latest` for an undated id that is not already a `-latest` one: the last resort of a
/// lookup.
pub(crate) fn latest_alias(model: &str) -> Option<String> {
    let plain = plain_id(&model.trim().to_ascii_lowercase());
    (strip_date(&plain).is_none() && !plain.ends_with("-latest")).then(|| format!("{plain}-latest"))
}

/// The plain model id of a lowercased name (see [`candidates`]).
pub(crate) fn plain_id(name: &str) -> String {
    let mut id = name;
    while let Some(rest) = PREFIXES.iter().find_map(|p| id.strip_prefix(p)) {
        id = rest;
    }
    // Bedrock: [region.]anthropic.<id>[-vN[:M]]
    let bedrock = REGIONS
        .iter()
        .find_map(|r| id.strip_prefix(r))
        .unwrap_or(id)
        .strip_prefix("anthropic.");
    let mut id = match bedrock {
        Some(rest) => strip_bedrock_version(rest).to_owned(),
        None => id.to_owned(),
    };
    // Vertex: <id>@<YYYYMMDD> or <id>@default
    if let Some((base, version)) = id.split_once('@') {
        id = if is_digits(version, 8) {
            format!("{base}-{version}")
        } else {
            base.to_owned()
        };
    }
    if id.starts_with("claude") {
        id = id.replace('.', "-");
    }
    id
}

/// `claude-…-20250929-v1:0` → `claude-…-20250929`.
fn strip_bedrock_version(id: &str) -> &str {
    let Some(at) = id.rfind("-v") else {
        return id;
    };
    let version = &id[at + 2..];
    let (major, minor) = version.split_once(':').unwrap_or((version, "0"));
    if !major.is_empty()
        && major.bytes().all(|b| b.is_ascii_digit())
        && !minor.is_empty()
        && minor.bytes().all(|b| b.is_ascii_digit())
    {
        &id[..at]
    } else {
        id
    }
}

/// The id without its date suffix: `-YYYYMMDD` (Anthropic) or `-YYYY-MM-DD` (OpenAI).
pub(crate) fn strip_date(id: &str) -> Option<&str> {
    date_suffix_start(id).map(|at| &id[..at])
}

/// Where the `-DATE` suffix of `id` starts, if it has one.
fn date_suffix_start(id: &str) -> Option<usize> {
    let bytes = id.as_bytes();
    let n = bytes.len();
    if n > 9 && bytes[n - 9] == b'-' && is_digits(&id[n - 8..], 8) {
        return Some(n - 9);
    }
    if n > 11
        && bytes[n - 11] == b'-'
        && is_digits(&id[n - 10..n - 6], 4)
        && bytes[n - 6] == b'-'
        && is_digits(&id[n - 5..n - 3], 2)
        && bytes[n - 3] == b'-'
        && is_digits(&id[n - 2..], 2)
    {
        return Some(n - 11);
    }
    None
}

/// If `key` is `base` plus a date suffix, that date with its dashes removed (for ordering).
pub(crate) fn dated_version_of(key: &str, base: &str) -> Option<String> {
    let at = date_suffix_start(key)?;
    (&key[..at] == base).then(|| key[at + 1..].replace('-', ""))
}

fn is_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

fn push_unique(out: &mut Vec<String>, name: String) {
    if !out.contains(&name) {
        out.push(name);
    }
}

/// Up to three of `names` closest to `model`, best first: names that extend it, then by
/// edit distance, within a distance that scales with the name's length.
pub(crate) fn suggestions<'a>(model: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let wanted = plain_id(&model.trim().to_ascii_lowercase());
    let limit = (wanted.chars().count() / 3).max(3);
    let mut scored: Vec<(usize, &str)> = names
        .filter_map(|name| {
            let lower = name.to_ascii_lowercase();
            let score = if lower.starts_with(&wanted) && !wanted.is_empty() {
                0
            } else {
                levenshtein(&wanted, &lower)
            };
            (score <= limit).then_some((score, name))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(3)
        .map(|(_, n)| n.to_owned())
        .collect()
}

/// The number of single-character edits between `a` and `b`.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_of_routed_bedrock_and_vertex_names() {
        let cases = [
            ("claude-sonnet-4-5", "claude-sonnet-4-5"),
            ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
            ("openai/gpt-4o", "gpt-4o"),
            (
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "claude-sonnet-4-5-20250929",
            ),
            (
                "bedrock/converse/global.anthropic.claude-haiku-4-5-20251001-v1:0",
                "claude-haiku-4-5-20251001",
            ),
            (
                "anthropic.claude-3-5-sonnet-20241022-v2:0",
                "claude-3-5-sonnet-20241022",
            ),
            (
                "vertex_ai/claude-sonnet-4-5@20250929",
                "claude-sonnet-4-5-20250929",
            ),
            ("vertex_ai/claude-opus-4-6@default", "claude-opus-4-6"),
            ("claude-sonnet-4.5", "claude-sonnet-4-5"),
            ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
            ("gpt-4.1-mini", "gpt-4.1-mini"),
            ("o3-2025-04-16", "o3-2025-04-16"),
        ];
        for (name, want) in cases {
            assert_eq!(plain_id(name), want, "{name}");
        }
    }

    #[test]
    fn dates_are_recognised_in_both_styles() {
        assert_eq!(
            strip_date("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(strip_date("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(strip_date("claude-sonnet-4-5"), None);
        assert_eq!(strip_date("gpt-4o"), None);
        assert_eq!(strip_date("20250929"), None);
        assert_eq!(
            dated_version_of("gpt-4o-2024-08-06", "gpt-4o"),
            Some("20240806".to_owned())
        );
        assert_eq!(
            dated_version_of("claude-opus-4-1-20250805", "claude-opus-4"),
            None
        );
    }

    #[test]
    fn candidates_go_from_specific_to_alias() {
        assert_eq!(
            candidates(" Anthropic/Claude-Sonnet-4-5-20250929 "),
            [
                "anthropic/claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5"
            ]
        );
        assert_eq!(candidates("claude-3-7-sonnet"), ["claude-3-7-sonnet"]);
        assert_eq!(
            candidates("claude-3-7-sonnet-latest"),
            ["claude-3-7-sonnet-latest", "claude-3-7-sonnet"]
        );
        assert_eq!(
            latest_alias("anthropic/claude-3-7-sonnet").as_deref(),
            Some("claude-3-7-sonnet-latest")
        );
        assert_eq!(latest_alias("claude-3-7-sonnet-latest"), None);
        assert_eq!(latest_alias("claude-3-7-sonnet-20250219"), None);
    }

    #[test]
    fn suggestions_prefer_extensions_then_near_misses() {
        let names = [
            "claude-sonnet-4-5",
            "claude-sonnet-4-6",
            "claude-opus-4-5",
            "gpt-4o",
            "gpt-4o-mini",
        ];
        assert_eq!(
            suggestions("claude-sonet-4-5", names.iter().copied()),
            ["claude-sonnet-4-5", "claude-sonnet-4-6", "claude-opus-4-5"]
        );
        assert_eq!(
            suggestions("gpt-4o", names.iter().copied()),
            ["gpt-4o", "gpt-4o-mini"]
        );
        assert!(suggestions("llama-3-70b", names.iter().copied()).is_empty());
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
