//! `cargo xtask accuracy`: how exact the counters are on the committed corpus.
//!
//! For each encoding and corpus category: the OpenAI counter's exact-match rate against
//! Python tiktoken's reference counts (files, ~4,000-character chunks, generated
//! pathological inputs), and the estimator's mean / worst absolute percentage error per file
//! and per chunk, next to `ceil(chars / 4)`. "worst x" is the largest factor between estimate
//! and exact count (max of est/exact and exact/est).

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;

use tokenbudget_counter::{Encoding, Estimator, OpenAiCounter};

#[derive(Default)]
struct Errors {
    n: usize,
    sum: f64,
    worst: f64,
    worst_factor: f64,
}

impl Errors {
    fn add(&mut self, estimate: u64, exact: u64) {
        if exact == 0 {
            return;
        }
        let (e, x) = (estimate as f64, exact as f64);
        let err = (e - x).abs() / x * 100.0;
        self.n += 1;
        self.sum += err;
        self.worst = self.worst.max(err);
        let factor = if e == 0.0 {
            f64::INFINITY
        } else {
            (e / x).max(x / e)
        };
        self.worst_factor = self.worst_factor.max(factor);
    }

    fn cell(&self) -> String {
        if self.n == 0 {
            return "-".into();
        }
        format!(
            "{:5.1}% / {:5.1}% ({:.2}x)",
            self.sum / self.n as f64,
            self.worst,
            self.worst_factor
        )
    }
}

#[derive(Default)]
struct Category {
    files: usize,
    files_exact: usize,
    chunks: usize,
    chunks_exact: usize,
    est_file: Errors,
    est_chunk: Errors,
    quarter_file: Errors,
    quarter_chunk: Errors,
}

fn quarter(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn main() {
    let refs = corpus::references();
    let specs = corpus::generated_specs();
    println!(
        "reference: Python tiktoken {} (encode_ordinary), chunks of {} characters",
        refs.tiktoken_version, refs.chunk_chars
    );
    let mut all_exact = true;
    for encoding in Encoding::ALL {
        let counter = OpenAiCounter::new(encoding);
        let estimator = Estimator::new(encoding);
        let name = encoding.name();
        let mut categories: BTreeMap<&str, Category> = BTreeMap::new();
        for file in &refs.files {
            let text = file.text();
            let c = categories.entry(&file.category).or_default();
            let exact = file.count(name);
            c.files += 1;
            c.files_exact += usize::from(counter.count_tokens(&text) == exact);
            c.est_file.add(estimator.estimate(&text), exact);
            c.quarter_file.add(quarter(&text), exact);
            for (chunk, &exact) in corpus::chunks(&text).iter().zip(file.chunks(name)) {
                c.chunks += 1;
                c.chunks_exact += usize::from(counter.count_tokens(chunk) == exact);
                c.est_chunk.add(estimator.estimate(chunk), exact);
                c.quarter_chunk.add(quarter(chunk), exact);
            }
        }
        let generated = categories.entry("generated (1 MB)").or_default();
        for (spec, reference) in specs.iter().zip(&refs.generated) {
            let text = spec.text();
            let exact = reference.count(name);
            generated.files += 1;
            generated.files_exact += usize::from(counter.count_tokens(&text) == exact);
            generated.est_file.add(estimator.estimate(&text), exact);
            generated.quarter_file.add(quarter(&text), exact);
        }

        println!("\n## {name}\n");
        println!(
            "| category | tiktoken exact: files | chunks | estimator per file: mean / worst (worst x) | per chunk | ceil(chars/4) per file | per chunk |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (category, c) in &categories {
            all_exact &= c.files_exact == c.files && c.chunks_exact == c.chunks;
            println!(
                "| {category} | {}/{} | {}/{} | {} | {} | {} | {} |",
                c.files_exact,
                c.files,
                c.chunks_exact,
                c.chunks,
                c.est_file.cell(),
                c.est_chunk.cell(),
                c.quarter_file.cell(),
                c.quarter_chunk.cell(),
            );
        }
    }
    if !all_exact {
        eprintln!("accuracy: the OpenAI counter disagrees with the reference");
        std::process::exit(1);
    }
}
