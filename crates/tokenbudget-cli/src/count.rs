//! `tokenbudget count`: tokens of a text or a chat request, without touching the database.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokenbudget::{Encoding, Estimator, Exactness, Message, TokenCounter};

use crate::cli::{CountArgs, Provider};
use crate::failure::Failure;
use crate::output::Out;

pub async fn run(args: CountArgs, out: &mut Out) -> Result<(), Failure> {
    let counter = counter(args.provider, args.model.as_deref())?;
    let (input, source) = read_input(args.file.as_deref())?;
    let count = if args.messages {
        let messages: Vec<Message> = serde_json::from_str(&input).map_err(|e| {
            Failure::error(format!(
                "{source} is not a JSON array of chat messages: {e}"
            ))
        })?;
        counter.count_messages(&messages).await
    } else {
        counter.count(&input).await
    }
    .map_err(|e| Failure::from(tokenbudget::Error::from(e)).context("counting"))?;
    let exact = count.exactness == Exactness::Exact;
    out.emit(
        json!({
            "tokens": count.tokens,
            "counter": count.counter.to_string(),
            "exact": exact,
        }),
        || {
            let how = if exact { "exact" } else { "estimated" };
            format!("{} tokens ({how}, {})", count.tokens, count.counter)
        },
    )
}

/// The counter for `provider`; `model` picks the encoding (OpenAI, estimate) or is sent to
/// the API (Claude).
fn counter(provider: Provider, model: Option<&str>) -> Result<Arc<dyn TokenCounter>, Failure> {
    // An encoding name (`cl100k_base`) is accepted wherever a model is.
    let encoding = model
        .map(|m| Encoding::from_name(m).unwrap_or_else(|| Encoding::for_model(m)))
        .unwrap_or(Encoding::DEFAULT);
    match provider {
        Provider::Estimate => Ok(Arc::new(Estimator::new(encoding))),
        Provider::Openai => openai(encoding),
        Provider::Claude => claude(model),
    }
}

#[cfg(feature = "tiktoken")]
fn openai(encoding: Encoding) -> Result<Arc<dyn TokenCounter>, Failure> {
    Ok(Arc::new(tokenbudget::OpenAiCounter::new(encoding)))
}

#[cfg(not(feature = "tiktoken"))]
fn openai(_: Encoding) -> Result<Arc<dyn TokenCounter>, Failure> {
    Err(Failure::usage(
        "--provider openai needs feature `tiktoken`, which this build of tokenbudget lacks; \
         use --provider estimate",
    ))
}

/// The Claude counter, answering with the estimate when the API is unavailable (no key,
/// network, 429, 5xx). `ANTHROPIC_BASE_URL` overrides the API's address.
#[cfg(feature = "claude")]
fn claude(model: Option<&str>) -> Result<Arc<dyn TokenCounter>, Failure> {
    let Some(model) = model else {
        return Err(Failure::usage(
            "--provider claude needs --model (for example --model claude-sonnet-4-5)",
        ));
    };
    let mut config = tokenbudget::ClaudeConfig::new(model);
    if let Some(base) = std::env::var("ANTHROPIC_BASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        config = config.with_base_url(base);
    }
    let counter = config
        .build()
        .map_err(|e| Failure::from(tokenbudget::Error::from(e)))?;
    Ok(Arc::new(counter.fail_open()))
}

#[cfg(not(feature = "claude"))]
fn claude(_: Option<&str>) -> Result<Arc<dyn TokenCounter>, Failure> {
    Err(Failure::usage(
        "--provider claude needs feature `claude`, which this build of tokenbudget lacks",
    ))
}

/// The whole input as text, and how to name it in errors.
fn read_input(file: Option<&Path>) -> Result<(String, String), Failure> {
    let mut bytes = Vec::new();
    let source = match file {
        Some(path) if path != Path::new("-") => {
            let name = path.display().to_string();
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| Failure::error(format!("reading {name}: {e}")))?;
            name
        }
        _ => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::error(format!("reading stdin: {e}")))?;
            "stdin".to_owned()
        }
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| Failure::error(format!("{source} is not UTF-8 text: {e}")))?;
    Ok((text, source))
}
