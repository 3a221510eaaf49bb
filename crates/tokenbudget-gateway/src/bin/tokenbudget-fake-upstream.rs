//! The fake upstream as a program, for `cargo xtask e2e` and `cargo xtask bench`:
//! `tokenbudget-fake-upstream [text|tool|hang|cut|slow=DURATION][:DIALECT] [ADDR-FILE]` prints its base URL.

use std::sync::Arc;

use tokenbudget_gateway::fake::{self, Dialect, Fake, Mode};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "text".into());
    let f = Arc::new(Fake::default());
    // `MODE[:DIALECT]`: the OpenAI side's dialect (openai, ollama, vllm, mlx).
    let (mode, dialect) = mode.split_once(':').unwrap_or((mode.as_str(), "openai"));
    f.set_dialect(match dialect {
        "ollama" => Dialect::Ollama,
        "vllm" => Dialect::Vllm,
        "mlx" => Dialect::Mlx,
        _ => Dialect::OpenAi,
    });
    f.set_mode(match mode {
        "tool" => Mode::ToolLoop,
        "hang" => Mode::Hang,
        "cut" => Mode::Cut,
        // `slow=40s`: every answer waits that long before its first byte.
        slow if slow.starts_with("slow=") => {
            let wait = humantime::parse_duration(&slow["slow=".len()..]).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{slow}: {e}"))
            })?;
            Mode::Slow(wait)
        }
        _ => Mode::Text,
    });
    f.set_chunk(64);
    let url = fake::start(f).await?;
    println!("{url}");
    if let Some(path) = std::env::args().nth(2) {
        std::fs::write(path, &url)?;
    }
    std::future::pending::<()>().await;
    Ok(())
}
