//! OpenAI encodings and the model-name → encoding table.

/// A tiktoken encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Encoding {
    /// `cl100k_base`: gpt-4, gpt-3.5-turbo, text-embedding-3, text-embedding-ada-002.
    Cl100kBase,
    /// `o200k_base`: gpt-4o, gpt-4.1, gpt-4.5, o1, o3, o4, gpt-5.
    O200kBase,
}

/// Prefixes of models that use `o200k_base`. Checked before [`CL100K_PREFIXES`], because
/// `gpt-4o` and `gpt-4.1` also start with `gpt-4`.
const O200K_PREFIXES: &[&str] = &[
    "gpt-4o",
    "chatgpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "o1",
    "o3",
    "o4",
    "codex-mini",
];

const CL100K_PREFIXES: &[&str] = &[
    "gpt-4",
    "gpt-3.5",
    "gpt-35-turbo",
    "text-embedding-3",
    "text-embedding-ada-002",
    "davinci-002",
    "babbage-002",
];

impl Encoding {
    /// The encoding used for models this table does not know: `o200k_base`, the encoding of
    /// every OpenAI chat model released since gpt-4o.
    pub const DEFAULT: Encoding = Encoding::O200kBase;

    /// Both encodings.
    pub const ALL: [Encoding; 2] = [Encoding::Cl100kBase, Encoding::O200kBase];

    /// The encoding of `model`, or [`Encoding::DEFAULT`] when the model is unknown.
    ///
    /// ```
    /// use tokenbudget_counter::Encoding;
    /// assert_eq!(Encoding::for_model("gpt-4-0613"), Encoding::Cl100kBase);
    /// assert_eq!(Encoding::for_model("gpt-4o-mini"), Encoding::O200kBase);
    /// assert_eq!(Encoding::for_model("some-new-model"), Encoding::DEFAULT);
    /// ```
    pub fn for_model(model: &str) -> Encoding {
        Self::try_for_model(model).unwrap_or(Self::DEFAULT)
    }

    /// The encoding of `model`, or `None` when the model is unknown.
    ///
    /// Matching is by prefix and ignores ASCII case, a provider prefix such as `openai/`, and
    /// the `ft:` prefix of fine-tuned models (`ft:gpt-4o-mini:org::id`).
    pub fn try_for_model(model: &str) -> Option<Encoding> {
        let model = model.trim().to_ascii_lowercase();
        let model = model.strip_prefix("ft:").unwrap_or(&model);
        let model = model.rsplit_once('/').map_or(model, |(_, m)| m);
        if O200K_PREFIXES.iter().any(|p| model.starts_with(p)) {
            Some(Encoding::O200kBase)
        } else if CL100K_PREFIXES.iter().any(|p| model.starts_with(p)) {
            Some(Encoding::Cl100kBase)
        } else {
            None
        }
    }

    /// The tiktoken name: `cl100k_base` or `o200k_base`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    /// Parses a tiktoken name (`cl100k_base`, `o200k_base`).
    pub fn from_name(name: &str) -> Option<Encoding> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_map_to_the_issue_table() {
        for m in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-32k",
            "gpt-4-turbo",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-0125",
            "gpt-35-turbo",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "text-embedding-ada-002",
        ] {
            assert_eq!(
                Encoding::try_for_model(m),
                Some(Encoding::Cl100kBase),
                "{m}"
            );
        }
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-2024-08-06",
            "chatgpt-4o-latest",
            "gpt-4.1",
            "gpt-4.1-nano",
            "o1",
            "o1-mini",
            "o3",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "GPT-4O",
            "openai/gpt-4o",
            "ft:gpt-4o-mini:acme::abc123",
        ] {
            assert_eq!(Encoding::try_for_model(m), Some(Encoding::O200kBase), "{m}");
        }
        for m in ["claude-sonnet-4", "llama-3", ""] {
            assert_eq!(Encoding::try_for_model(m), None, "{m}");
            assert_eq!(Encoding::for_model(m), Encoding::DEFAULT, "{m}");
        }
    }

    #[test]
    fn names_round_trip() {
        for e in Encoding::ALL {
            assert_eq!(Encoding::from_name(e.name()), Some(e));
        }
        assert_eq!(Encoding::from_name("p50k_base"), None);
    }
}
