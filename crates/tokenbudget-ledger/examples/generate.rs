//! Writes a Claude Code-shaped tree for benchmarks: `generate DIR MEGABYTES`.
//! Prints the expected number of responses (counted once each), the records the ledger
//! stores besides them (bare copies shadowed by dedup rule 6), the expected token total,
//! and the bytes and files written.

use tokenbudget_ledger::testkit::fixture::{generate, Spec};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(mb)) = (args.next(), args.next()) else {
        eprintln!("usage: generate DIR MEGABYTES");
        std::process::exit(2);
    };
    let Ok(mb) = mb.parse::<u64>() else {
        eprintln!("MEGABYTES must be a number");
        std::process::exit(2);
    };
    // About 2.6 kB per assistant line, 2 lines per response on average, 600 responses per
    // session file: ~3.3 MB per session.
    let sessions = (mb / 3).max(1) as usize;
    let spec = Spec {
        projects: sessions.div_ceil(20),
        sessions: 20.min(sessions),
        responses: 600,
        padding: 2_000,
        ..Spec::default()
    };
    match generate(std::path::Path::new(&dir), &spec) {
        Ok(e) => println!(
            "{{\"responses\":{},\"shadowed\":{},\"tokens\":{},\"bytes\":{},\"files\":{}}}",
            e.total.records,
            e.shadowed,
            e.total.usage.total_tokens(),
            e.bytes,
            e.files.len()
        ),
        Err(e) => {
            eprintln!("generate: {e}");
            std::process::exit(1);
        }
    }
}
