//! The committed corpus and its reference counts, shared by the tests and the examples
//! (which include this file with `#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Characters per chunk, as in `scripts/reference_counts.py`.
pub const CHUNK_CHARS: usize = 4000;

/// `tests/corpus/` of this crate.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// `reference_counts.json`.
#[derive(Debug, Deserialize)]
pub struct References {
    pub tiktoken_version: String,
    pub chunk_chars: usize,
    pub files: Vec<FileRef>,
    pub generated: Vec<GeneratedRef>,
}

/// Reference counts of one corpus file.
#[derive(Debug, Deserialize)]
pub struct FileRef {
    pub path: String,
    pub category: String,
    pub chars: usize,
    pub source: String,
    pub cl100k_base: u64,
    pub o200k_base: u64,
    pub cl100k_base_chunks: Vec<u64>,
    pub o200k_base_chunks: Vec<u64>,
}

/// Reference counts of one generated input.
#[derive(Debug, Deserialize)]
pub struct GeneratedRef {
    pub name: String,
    pub chars: usize,
    pub source: String,
    pub cl100k_base: u64,
    pub o200k_base: u64,
}

/// One entry of `generated.json`: the concatenation of `unit` repeated `n` times per part.
#[derive(Debug, Deserialize)]
pub struct GeneratedSpec {
    pub name: String,
    pub parts: Vec<(String, usize)>,
}

impl FileRef {
    /// The reference count for encoding `name`.
    pub fn count(&self, encoding: &str) -> u64 {
        match encoding {
            "cl100k_base" => self.cl100k_base,
            "o200k_base" => self.o200k_base,
            other => panic!("no reference for {other}"),
        }
    }

    /// The reference chunk counts for encoding `name`.
    pub fn chunks(&self, encoding: &str) -> &[u64] {
        match encoding {
            "cl100k_base" => &self.cl100k_base_chunks,
            "o200k_base" => &self.o200k_base_chunks,
            other => panic!("no reference for {other}"),
        }
    }

    /// The file's text.
    pub fn text(&self) -> String {
        std::fs::read_to_string(corpus_dir().join(&self.path))
            .unwrap_or_else(|e| panic!("{}: {e}", self.path))
    }
}

impl GeneratedRef {
    /// The reference count for encoding `name`.
    pub fn count(&self, encoding: &str) -> u64 {
        match encoding {
            "cl100k_base" => self.cl100k_base,
            "o200k_base" => self.o200k_base,
            other => panic!("no reference for {other}"),
        }
    }
}

impl GeneratedSpec {
    /// The generated text.
    pub fn text(&self) -> String {
        self.parts.iter().map(|(unit, n)| unit.repeat(*n)).collect()
    }
}

/// Loads `reference_counts.json`.
pub fn references() -> References {
    let path = corpus_dir().join("reference_counts.json");
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&json).expect("reference_counts.json parses")
}

/// Loads `generated.json`.
pub fn generated_specs() -> Vec<GeneratedSpec> {
    let path = corpus_dir().join("generated.json");
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&json).expect("generated.json parses")
}

/// `text` cut into chunks of `CHUNK_CHARS` characters (the last may be shorter).
pub fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut n = 0;
    for (i, _) in text.char_indices() {
        if n == CHUNK_CHARS {
            out.push(&text[start..i]);
            start = i;
            n = 0;
        }
        n += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Every file under `dir/<category>/`, as (category, relative path, text), sorted.
pub fn files_under(dir: &Path) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut categories: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    categories.sort_by_key(|e| e.file_name());
    for category in categories {
        let mut files: Vec<_> = std::fs::read_dir(category.path())
            .unwrap()
            .flatten()
            .collect();
        files.sort_by_key(|e| e.file_name());
        for file in files {
            let name = category.file_name().to_string_lossy().into_owned();
            let rel = format!("{name}/{}", file.file_name().to_string_lossy());
            let text = std::fs::read_to_string(file.path()).unwrap();
            out.push((name, rel, text));
        }
    }
    out
}
