//! Fits the estimator's weights against exact counts and writes `src/estimate_weights.rs`.
//!
//! ```sh
//! python3 scripts/build_corpus.py --train /tmp/counter-train
//! cargo run --release -p tokenbudget-counter --example fit_estimator -- /tmp/counter-train --write
//! ```
//!
//! The training set is built from other files than the committed corpus, so the accuracy
//! `cargo xtask accuracy` reports on the corpus is out-of-sample. Rows are ~4,000-character
//! chunks, weighted by `1 / exact` (so the fit minimizes relative error) and by
//! `1 / rows in the category` (so every category counts the same); the weights are
//! constrained non-negative (coordinate-descent NNLS on the normal equations).

#[path = "../tests/support/corpus.rs"]
mod corpus;

use std::collections::BTreeMap;
use std::path::Path;

use tokenbudget_counter::estimator_internals::{features, FEATURES, FEATURE_NAMES};
use tokenbudget_counter::Encoding;

struct Row {
    category: String,
    x: [[f64; FEATURES]; 2],
    y: [f64; 2],
}

fn exact(encoding: Encoding, text: &str) -> f64 {
    let tokenizer = match encoding {
        Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        _ => bpe_openai::o200k_base(),
    };
    tokenizer.count(text) as f64
}

fn row(category: &str, text: &str) -> Row {
    Row {
        category: category.to_owned(),
        x: [
            features(text, Encoding::Cl100kBase),
            features(text, Encoding::O200kBase),
        ],
        y: [
            exact(Encoding::Cl100kBase, text),
            exact(Encoding::O200kBase, text),
        ],
    }
}

/// Long pathological inputs for training; the corpus's `generated.json` uses other ones.
fn pathological() -> Vec<String> {
    let mut out = vec![
        " ".repeat(300_000) + "b",
        "\n".repeat(200_000) + "b",
        "\t".repeat(100_000),
        "\t ".repeat(100_000) + "b",
        "b".repeat(300_000),
        "xyz".repeat(100_000),
        "9".repeat(200_000),
        "ThisIsCamelCase".repeat(20_000),
        "Zm9vYmFyYmF6cXV4".repeat(20_000),
        "🙂🎉👩‍💻".repeat(30_000),
        "Привет".repeat(30_000),
    ];
    out.push("ab12".repeat(50_000));
    // Uniformly random Han and Hangul: mostly rare characters, unlike modern running text,
    // so the single-/multi-token weights are not left to the mix of one kind of text.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random_in = |start: u32, len: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        char::from_u32(start + (seed % len as u64) as u32).expect("in range")
    };
    out.push((0..20_000).map(|_| random_in(0x4E00, 0x5200)).collect());
    out.push((0..20_000).map(|_| random_in(0xAC00, 0x2BA4)).collect());
    out
}

fn rows(dir: &Path) -> Vec<Row> {
    let mut out = Vec::new();
    for (category, _, text) in corpus::files_under(dir) {
        for chunk in corpus::chunks(&text) {
            if !chunk.is_empty() {
                out.push(row(&category, chunk));
            }
        }
    }
    for text in pathological() {
        out.push(row("pathological", &text));
    }
    // Chat-template and markup tokens written as text (the corpus's `special/` uses others).
    for unit in [
        "<|im_start|>",
        "<|im_start|>user\nHi there<|im_end|>\n",
        "<s>[INST] Summarize this. [/INST]</s>",
        "<|fim_prefix|>def add(a, b):<|fim_suffix|>    return<|fim_middle|>",
        "<|startoftext|>",
        "<div class=\"note\"><span>x</span></div>",
        "{{#each items}}{{name}}{{/each}}",
    ] {
        out.push(row("markup", unit));
        out.push(row("markup", &unit.repeat(4000 / unit.len())));
    }
    out
}

fn predict(w: &[f64; FEATURES], x: &[f64; FEATURES]) -> f64 {
    x.iter()
        .zip(w)
        .map(|(a, b)| a * b)
        .sum::<f64>()
        .round()
        .max(1.0)
}

fn fit(rows: &[Row], target: usize) -> [f64; FEATURES] {
    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        *per_category.entry(&r.category).or_default() += 1;
    }
    // Normal equations of the weighted problem: Q = Aᵀ D A, c = Aᵀ D y.
    let mut q = [[0.0f64; FEATURES]; FEATURES];
    let mut c = [0.0f64; FEATURES];
    for r in rows {
        let y = r.y[target];
        if y == 0.0 {
            continue;
        }
        // Ordinary text is what the estimate is mostly used for; edge cases only need to
        // stay within 2x.
        let importance = match r.category.as_str() {
            "edge" | "pathological" | "markup" => 1.0,
            _ => 4.0,
        };
        let weight = importance / (y * y) / per_category[r.category.as_str()] as f64;
        let x = &r.x[target];
        for i in 0..FEATURES {
            if x[i] == 0.0 {
                continue;
            }
            c[i] += weight * x[i] * y;
            for j in 0..FEATURES {
                q[i][j] += weight * x[i] * x[j];
            }
        }
    }
    // A little ridge keeps features seen in few rows from taking extreme values.
    for (i, row) in q.iter_mut().enumerate() {
        row[i] += 1e-9 + row[i] * 1e-6;
    }
    let mut w = [0.0f64; FEATURES];
    for _ in 0..20_000 {
        let mut delta = 0.0f64;
        for i in 0..FEATURES {
            if q[i][i] == 0.0 {
                continue;
            }
            let grad: f64 = (0..FEATURES).map(|j| q[i][j] * w[j]).sum::<f64>() - c[i];
            let new = (w[i] - grad / q[i][i]).max(0.0);
            delta = delta.max((new - w[i]).abs());
            w[i] = new;
        }
        if delta < 1e-12 {
            break;
        }
    }
    w
}

fn report(label: &str, rows: &[Row], w: &[f64; FEATURES], target: usize) {
    let mut stats: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
    for r in rows {
        let y = r.y[target];
        if y == 0.0 {
            continue;
        }
        let err = (predict(w, &r.x[target]) - y).abs() / y * 100.0;
        let s = stats.entry(&r.category).or_insert((0.0, 0.0, 0));
        s.0 += err;
        s.1 = s.1.max(err);
        s.2 += 1;
    }
    if std::env::var_os("FIT_VERBOSE").is_some() {
        for r in rows {
            let (y, p) = (r.y[target], predict(w, &r.x[target]));
            if y > 0.0 && (p / y > 1.4 || p / y < 0.7) {
                let top: Vec<String> = (0..FEATURES)
                    .filter(|&i| r.x[target][i] * w[i] > 0.05 * p)
                    .map(|i| format!("{}={}*{:.3}", FEATURE_NAMES[i], r.x[target][i], w[i]))
                    .collect();
                eprintln!(
                    "    {label} {} exact {y} est {p}: {}",
                    r.category,
                    top.join(" ")
                );
            }
        }
    }
    for (category, (sum, worst, n)) in stats {
        eprintln!(
            "  {label:<6} {category:<13} chunks {n:>4}  mean {:>5.1}%  worst {worst:>6.1}%",
            sum / n as f64
        );
    }
}

/// Bit set of the characters in `range` that are one token on their own.
fn single_token_bits(encoding: Encoding, range: std::ops::RangeInclusive<u32>) -> Vec<u64> {
    let start = *range.start();
    let mut bits = vec![0u64; (range.end() - start) as usize / 64 + 1];
    for cp in range {
        let c = char::from_u32(cp).expect("no surrogates in these ranges");
        if exact(encoding, c.encode_utf8(&mut [0; 4])) == 1.0 {
            let i = (cp - start) as usize;
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits
}

fn rust_bits(bits: &[u64]) -> String {
    let mut s = String::from("&[");
    for (i, b) in bits.iter().enumerate() {
        if i % 6 == 0 {
            s.push_str("\n        ");
        }
        s.push_str(&format!("0x{b:016x}, "));
    }
    s.push_str("\n    ]");
    s
}

fn tables_source() -> String {
    let mut s = String::from(
        "//! Which Han and Hangul characters are a single token. Generated by\n\
         //! `cargo run --release -p tokenbudget-counter --example fit_estimator -- <train dir> --write`;\n\
         //! do not edit.\n\n\
         /// Bit sets over U+4E00..=U+9FFF (`han`) and U+AC00..=U+D7A3 (`hangul`): bit `i` is set when\n\
         /// the character at the range start plus `i` encodes to one token on its own.\n\
         pub(crate) struct Tables {\n    pub(crate) han: &'static [u64],\n    pub(crate) hangul: &'static [u64],\n}\n",
    );
    for (encoding, name) in [
        (Encoding::Cl100kBase, "CL100K"),
        (Encoding::O200kBase, "O200K"),
    ] {
        let han = single_token_bits(encoding, 0x4E00..=0x9FFF);
        let hangul = single_token_bits(encoding, 0xAC00..=0xD7A3);
        let ones = |b: &[u64]| b.iter().map(|w| w.count_ones()).sum::<u32>();
        eprintln!(
            "{encoding}: {} single-token Han, {} Hangul",
            ones(&han),
            ones(&hangul)
        );
        s.push_str(&format!(
            "\n/// `{encoding}`.\n#[rustfmt::skip]\npub(crate) static {name}_TABLES: Tables = Tables {{\n    han: {},\n    hangul: {},\n}};\n",
            rust_bits(&han),
            rust_bits(&hangul),
        ));
    }
    s
}

fn rust_array(w: &[f64; FEATURES]) -> String {
    let mut s = String::from("[\n");
    for (name, v) in FEATURE_NAMES.iter().zip(w) {
        s.push_str(&format!("    {v:.6}, // {name}\n"));
    }
    s.push(']');
    s
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let train_dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("/tmp/counter-train", |s| s.as_str());
    let write = args.iter().any(|a| a == "--write");

    if write {
        // The features read the tables, so write them before computing any.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/estimate_tables.rs");
        let source = tables_source();
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != source {
            std::fs::write(&path, source).expect("write estimate_tables.rs");
            eprintln!(
                "wrote {}; rebuild and run again to fit with the new tables",
                path.display()
            );
            return;
        }
    }
    let train = rows(Path::new(train_dir));
    let test = rows(&corpus::corpus_dir());
    let mut weights = Vec::new();
    for (target, encoding) in Encoding::ALL.iter().enumerate() {
        let w = fit(&train, target);
        eprintln!("{encoding}:");
        report("train", &train, &w, target);
        report("corpus", &test, &w, target);
        weights.push(w);
    }
    let source = format!(
        "//! Estimator weights. Generated by `cargo run --release -p tokenbudget-counter \
         --example fit_estimator -- <train dir> --write`; do not edit.\n\n\
         use crate::estimate::FEATURES;\n\n\
         /// Weights fitted against `cl100k_base`.\n\
         #[rustfmt::skip]\n\
         pub(crate) const CL100K_WEIGHTS: [f64; FEATURES] = {};\n\n\
         /// Weights fitted against `o200k_base`.\n\
         #[rustfmt::skip]\n\
         pub(crate) const O200K_WEIGHTS: [f64; FEATURES] = {};\n",
        rust_array(&weights[0]),
        rust_array(&weights[1]),
    );
    if write {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/estimate_weights.rs");
        std::fs::write(&path, source).expect("write estimate_weights.rs");
        eprintln!("wrote {}", path.display());
    } else {
        print!("{source}");
    }
}
