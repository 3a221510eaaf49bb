//! The fake upstream as a program, for `cargo xtask e2e` and `cargo xtask bench`:
//! `tokenbudget-fake-upstream [text|tool|refuse-never|hang] [ADDR-FILE]` prints its base URL.

use std::sync::Arc;

use tokenbudget_gateway::fake::{self, Fake, Mode};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "text".into());
    let f = Arc::new(Fake::default());
    f.set_mode(match mode.as_str() {
        "tool" => Mode::ToolLoop,
        "hang" => Mode::Hang,
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
