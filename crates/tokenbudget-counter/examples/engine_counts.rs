//! Prints `bpe-openai`'s counts for every corpus file and generated input as JSON.
//!
//! `scripts/reference_counts.py` uses it as the second implementation that must agree with
//! its chunked tiktoken computation on inputs where Python tiktoken panics.

#[path = "../tests/support/corpus.rs"]
mod corpus;

use serde_json::{json, Map, Value};

fn counts(text: &str) -> Value {
    json!({
        "cl100k_base": bpe_openai::cl100k_base().count(text),
        "o200k_base": bpe_openai::o200k_base().count(text),
    })
}

fn main() {
    let dir = corpus::corpus_dir();
    let mut files = Map::new();
    for (_, rel, text) in corpus::files_under(&dir) {
        files.insert(rel, counts(&text));
    }
    let mut generated = Map::new();
    for spec in corpus::generated_specs() {
        generated.insert(spec.name.clone(), counts(&spec.text()));
    }
    println!("{}", json!({ "files": files, "generated": generated }));
}
