//! Reads and parses every line of a Claude Code tree, without a store: the importer's
//! reading and parsing alone, for profiling (`valgrind --tool=callgrind` counts are
//! repeatable on a loaded machine).
//!
//! `cargo run --release -p tokenbudget-ledger --example parse_tree -- DIR`

use tokenbudget_ledger::parse::parse_line;
use tokenbudget_ledger::reader::{Line, LineReader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: parse_tree DIR")?;
    let files = tokenbudget_ledger::discover::discover(dir.as_ref(), "")?;
    let (mut lines, mut records, mut bytes) = (0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    for f in &files {
        let file = std::fs::File::open(&f.path)?;
        let mut reader = LineReader::with_buffer(file, 0, std::mem::take(&mut buf));
        while let Some(line) = reader.next_line()? {
            lines += 1;
            if let Line::Text { offset, bytes, .. } = line {
                records += u64::from(parse_line(bytes, offset, &f.ctx).outcome.is_ok());
            }
        }
        bytes += reader.consumed();
        buf = reader.into_buffer();
    }
    println!(
        "{} files, {bytes} bytes, {lines} lines, {records} records",
        files.len()
    );
    Ok(())
}
