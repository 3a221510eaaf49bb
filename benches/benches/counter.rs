//! Token counting throughput: our `OpenAiCounter` next to the engines in the same run.
//!
//! ```text
//! cargo bench -p tokenbudget-benches --bench counter
//! ```
//!
//! - `count/<encoding>/<category>`: MB/s on 256 KiB of the counter crate's corpus per category
//!   for `tokenbudget` (`OpenAiCounter::count_tokens`: the hand-written split and merges over
//!   `bpe-openai`'s vocabulary), `bpe-openai` (its own `count`, regex split and backtracking
//!   encoder), `tiktoken-rs` (`encode_ordinary().len()`) and the `estimator`.
//! - `pathological/<encoding>`: 256 KiB and 1 MiB of whitespace, of one letter (lower and
//!   upper case: o200k's split scans a capital run twice), of space-newline pairs, of a base64
//!   block and of a million spaces then a letter: equal MB/s at both sizes means linear time.
//!   tiktoken-rs is left out: its regex overflows its stack on the last input.
//! - Before criterion runs: encoder first-use cost (each measured in a fresh process, since
//!   the encoders are process-wide statics; `tokenbudget`'s includes `bpe-openai`'s, whose
//!   vocabulary it indexes) and Python tiktoken's MB/s on the same inputs, when `python3`
//!   with `tiktoken` is available (skipped with a message otherwise).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tokenbudget_counter::{Encoding, Estimator, OpenAiCounter};

const CATEGORIES: [&str; 4] = ["prose", "code", "json", "nonlatin"];
const LIMIT: usize = 256 * 1024;
const FIRST_USE_ENV: &str = "TB_COUNTER_FIRST_USE";

fn counter_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/tokenbudget-counter")
}

/// The category's corpus files joined by newlines, cut to 256 KiB at a char boundary (the
/// same input `scripts/python_throughput.py` builds).
fn category_text(category: &str) -> String {
    let dir = counter_crate().join("tests/corpus").join(category);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let joined = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut end = joined.len().min(LIMIT);
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    joined[..end].to_owned()
}

fn bpe(encoding: Encoding) -> &'static bpe_openai::Tokenizer {
    match encoding {
        Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        _ => bpe_openai::o200k_base(),
    }
}

fn tiktoken(encoding: Encoding) -> &'static tiktoken_rs::CoreBPE {
    match encoding {
        Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        _ => tiktoken_rs::o200k_base_singleton(),
    }
}

fn throughput(c: &mut Criterion) {
    for encoding in Encoding::ALL {
        let counter = OpenAiCounter::new(encoding);
        let estimator = Estimator::new(encoding);
        counter.warm_up();
        let mut group = c.benchmark_group(format!("count/{encoding}"));
        for category in CATEGORIES {
            let text = category_text(category);
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new("tokenbudget", category), &text, |b, t| {
                b.iter(|| counter.count_tokens(black_box(t)))
            });
            group.bench_with_input(BenchmarkId::new("bpe-openai", category), &text, |b, t| {
                b.iter(|| bpe(encoding).count(black_box(t.as_str())))
            });
            group.bench_with_input(BenchmarkId::new("tiktoken-rs", category), &text, |b, t| {
                b.iter(|| tiktoken(encoding).encode_ordinary(black_box(t)).len())
            });
            group.bench_with_input(BenchmarkId::new("estimator", category), &text, |b, t| {
                b.iter(|| estimator.estimate(black_box(t)))
            });
        }
        group.finish();
    }
}

fn pathological(c: &mut Criterion) {
    let base64 = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ+/3Rl2Xk";
    for encoding in Encoding::ALL {
        let counter = OpenAiCounter::new(encoding);
        counter.warm_up();
        let mut group = c.benchmark_group(format!("pathological/{encoding}"));
        for size in [LIMIT, 4 * LIMIT] {
            let inputs = [
                ("spaces", " ".repeat(size)),
                ("spaces-then-letter", " ".repeat(size - 1) + "a"),
                ("one-letter", "a".repeat(size)),
                ("one-capital", "A".repeat(size)),
                ("line-breaks-and-spaces", " \n".repeat(size / 2)),
                ("base64-block", base64.repeat(size / base64.len())),
            ];
            for (kind, text) in inputs {
                group.throughput(Throughput::Bytes(text.len() as u64));
                group.bench_with_input(BenchmarkId::new(kind, size), &text, |b, t| {
                    b.iter(|| counter.count_tokens(black_box(t)))
                });
            }
        }
        group.finish();
    }
}

/// In a child process (`TB_COUNTER_FIRST_USE=<engine>/<encoding>`): time the first count.
fn first_use_child(which: &str) -> ! {
    let started = Instant::now();
    let tokens = match which {
        "tokenbudget/cl100k_base" => {
            OpenAiCounter::new(Encoding::Cl100kBase).count_tokens("hello") as usize
        }
        "tokenbudget/o200k_base" => {
            OpenAiCounter::new(Encoding::O200kBase).count_tokens("hello") as usize
        }
        "bpe-openai/cl100k_base" => bpe_openai::cl100k_base().count("hello"),
        "bpe-openai/o200k_base" => bpe_openai::o200k_base().count("hello"),
        "tiktoken-rs/cl100k_base" => tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary("hello")
            .len(),
        "tiktoken-rs/o200k_base" => tiktoken_rs::o200k_base_singleton()
            .encode_ordinary("hello")
            .len(),
        other => panic!("unknown first-use target {other}"),
    };
    assert_eq!(tokens, 1);
    println!("{}", started.elapsed().as_micros());
    std::process::exit(0);
}

fn first_use_report() {
    let exe = std::env::current_exe().expect("current exe");
    println!("encoder first-use cost (median of 5 fresh processes):");
    for engine in ["tokenbudget", "bpe-openai", "tiktoken-rs"] {
        for encoding in Encoding::ALL {
            let which = format!("{engine}/{encoding}");
            let mut micros: Vec<u64> = (0..5)
                .filter_map(|_| {
                    let out = Command::new(&exe)
                        .env(FIRST_USE_ENV, &which)
                        .output()
                        .ok()?;
                    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
                })
                .collect();
            micros.sort_unstable();
            match micros.get(micros.len() / 2) {
                Some(m) => println!("  {which:<24} {:>8.1} ms", *m as f64 / 1000.0),
                None => println!("  {which:<24} (measurement failed)"),
            }
        }
    }
}

fn python_report() {
    let script = counter_crate().join("scripts/python_throughput.py");
    match Command::new("python3").arg(&script).output() {
        Ok(out) if out.status.success() => {
            println!("Python tiktoken on the same inputs (best of runs over ~2 s, MB/s):");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                println!("  {line}");
            }
        }
        Ok(out) => println!(
            "Python tiktoken: skipped ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("Python tiktoken: skipped (python3: {e})"),
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = throughput, pathological
}

fn main() {
    if let Ok(which) = std::env::var(FIRST_USE_ENV) {
        first_use_child(&which);
    }
    // `cargo test --benches` runs this binary with `--test`; the reports are for real runs.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        first_use_report();
        python_report();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
