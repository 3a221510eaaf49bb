#![doc = include_str!("../README.md")]

pub mod anthropic;
mod count;
mod error;
mod json_progress;
pub mod openai;
mod request;
mod response;
pub mod route;
mod schema;
mod sse;
mod stream;
mod target;
mod usage;

pub use count::{count_chat, count_tokens, ChatCounter, TokenCountAnswer, IMAGE_TOKENS};
pub use error::{Result, TranslateError};
pub use request::{
    parse_request, request_from_value, translate_request, translate_request_owned,
    TOOL_ERROR_PREFIX,
};
pub use response::{response_as_chunk, response_usage, translate_response};
pub use schema::adapt_schema;
pub use stream::{FinishCause, StreamStart, StreamTranslator, Upstream};
pub use target::{MaxTokensField, Reasoning, RouteTarget};
pub use usage::Usage;
