//! What a translated request is sent as: the upstream model and what that upstream supports.

use serde::{Deserialize, Serialize};

/// How the upstream takes a reasoning request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reasoning {
    /// No reasoning control: Anthropic's `thinking` is dropped. Defaults to this.
    #[default]
    None,
    /// `reasoning_effort` (`low`/`medium`/`high`: OpenAI reasoning models, vLLM, Ollama,
    /// OpenRouter), sized from `thinking.budget_tokens`.
    Effort,
}

/// Which field carries the output limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MaxTokensField {
    /// `max_tokens`: what local servers read. Defaults to this.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: required by OpenAI's reasoning models.
    MaxCompletionTokens,
}

/// The upstream side of a route, as [`translate_request`](crate::translate_request) needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteTarget {
    /// The model name sent upstream.
    pub model: String,
    /// How `thinking` is mapped.
    pub reasoning: Reasoning,
    /// Which field carries `max_tokens`.
    pub max_tokens_field: MaxTokensField,
}

impl RouteTarget {
    /// A target named `model` with no reasoning control and `max_tokens`.
    pub fn new(model: impl Into<String>) -> Self {
        RouteTarget {
            model: model.into(),
            reasoning: Reasoning::None,
            max_tokens_field: MaxTokensField::MaxTokens,
        }
    }

    /// The same target with `reasoning`.
    pub fn with_reasoning(mut self, reasoning: Reasoning) -> Self {
        self.reasoning = reasoning;
        self
    }

    /// The same target with `field` carrying the output limit.
    pub fn with_max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.max_tokens_field = field;
        self
    }
}
