//! `cargo xtask bench-ledger [--size MB] [--db URL]`: the usage ledger on a generated Claude
//! Code tree (about 1 GB by default), beside ccusage on the same tree, in one run.
//!
//! Prints: the first import's MB/s and peak RSS (pinned to one core with `taskset` when it
//! exists), a rerun with nothing new, `usage daily` on the filled ledger, and `ccusage daily`
//! over the same tree (the npm package, installed under `target/bench-ledger/npm`, pointed at
//! the tree with `CLAUDE_CONFIG_DIR`), with its time and peak RSS. Peak RSS is the child's
//! maximum resident set size as `/usr/bin/time -v` reports it ("n/a" without it). A
//! benchmark that prints numbers, never a test that times anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::run::{cargo, project_root, run, Result};

const USAGE: &str = "usage: cargo xtask bench-ledger [--size MB (default 1000)] [--db URL (default: a fresh SQLite file)]";

struct Args {
    size_mb: u64,
    db: Option<String>,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut out = Args {
        size_mb: 1000,
        db: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => {
                out.size_mb = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("--size needs a number of megabytes\n{USAGE}"))?;
            }
            "--db" => out.db = Some(it.next().ok_or(USAGE)?.clone()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(out)
}

/// One measured run of a child process.
struct Measured {
    seconds: f64,
    /// Peak resident set size in kB, when `/usr/bin/time -v` measured it.
    max_rss_kb: Option<u64>,
    /// User plus system CPU seconds, when `/usr/bin/time -v` measured them: on a machine
    /// shared with other work, the cost of a run pinned to one core, which wall time is not.
    cpu_seconds: Option<f64>,
    stdout: String,
}

const TIME: &str = "/usr/bin/time";

/// Runs `program args` (with `env`), timed, its peak RSS measured by `/usr/bin/time -v`.
fn measure(program: &Path, args: &[&str], env: &[(&str, &Path)], pin: bool) -> Result<Measured> {
    let has_time = Path::new(TIME).exists();
    let has_taskset = pin && Path::new("/usr/bin/taskset").exists();
    let mut cmd = if has_time {
        let mut c = Command::new(TIME);
        c.arg("-v");
        c
    } else if has_taskset {
        Command::new("/usr/bin/taskset")
    } else {
        Command::new(program)
    };
    if has_time && has_taskset {
        cmd.arg("/usr/bin/taskset");
    }
    if has_taskset {
        cmd.args(["-c", "0"]);
    }
    if has_time || has_taskset {
        cmd.arg(program);
    }
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown = format!(
        "{}{} {}",
        if has_taskset { "taskset -c 0 " } else { "" },
        program.display(),
        args.join(" ")
    );
    eprintln!("$ {shown}");
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            stderr
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    let max_rss_kb = stderr.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Maximum resident set size (kbytes):")
            .and_then(|v| v.trim().parse().ok())
    });
    let cpu = |label: &str| {
        stderr.lines().find_map(|l| {
            l.trim()
                .strip_prefix(label)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    };
    let cpu_seconds = cpu("User time (seconds):")
        .zip(cpu("System time (seconds):"))
        .map(|(u, s)| u + s);
    Ok(Measured {
        seconds,
        max_rss_kb,
        cpu_seconds,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

fn rss(m: &Measured) -> String {
    m.max_rss_kb.map_or_else(
        || "n/a".to_owned(),
        |kb| format!("{:.0} MB", kb as f64 / 1024.0),
    )
}

/// The generated tree under `dir/projects`, reused when a previous run wrote the same size.
fn tree(dir: &Path, size_mb: u64) -> Result<serde_json::Value> {
    let marker = dir.join("expected.json");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            eprintln!("reusing the tree in {}", dir.display());
            return Ok(v);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let projects = dir.join("projects");
    let out = cargo()
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "tokenbudget-ledger",
            "--features",
            "testkit",
            "--example",
            "generate",
            "--",
        ])
        .arg(&projects)
        .arg(size_mb.to_string())
        .output()
        .map_err(|e| format!("running the generator: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the generator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("generator output: {e}"))?;
    std::fs::write(&marker, text).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(v)
}

/// The ccusage release installed: 20.0.26, the newest on npm when this was written, was
/// published without its `@ccusage/ccusage-linux-x64` binary package (its launcher fails on
/// Linux); 20.0.24 is the newest with one. `CCUSAGE_VERSION` overrides it.
const CCUSAGE_VERSION: &str = "20.0.24";

/// `ccusage` from npm, installed once under `dir` (again when the version changes).
fn ccusage(dir: &Path) -> Result<PathBuf> {
    let wanted = std::env::var("CCUSAGE_VERSION").unwrap_or_else(|_| CCUSAGE_VERSION.to_owned());
    let bin = dir.join("node_modules/.bin/ccusage");
    if !version(&bin).ends_with(&wanted) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .arg(format!("ccusage@{wanted}")))?;
    }
    if version(&bin).is_empty() {
        return Err(format!(
            "{} does not run (no native binary?)",
            bin.display()
        ));
    }
    Ok(bin)
}

fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn main(args: &[String]) -> Result {
    let args = parse(args)?;
    let root = project_root();
    let work = root.join("target/bench-ledger");
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "tokenbudget-cli",
        "--bin",
        "tokenbudget",
    ]))?;
    let tb = root.join("target/release/tokenbudget");
    let dir = work.join(format!("tree-{}mb", args.size_mb));
    let expected = tree(&dir, args.size_mb)?;
    let projects = dir.join("projects");
    let bytes = expected["bytes"].as_u64().unwrap_or(0);
    let cc = ccusage(&work.join("npm"))?;

    let db = match &args.db {
        Some(url) => url.clone(),
        None => {
            let file = work.join("ledger.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
            format!("sqlite://{}", file.display())
        }
    };
    let tree_arg = projects.to_string_lossy().into_owned();
    let import_args = [
        "--db",
        db.as_str(),
        "--json",
        "import",
        "claude-code",
        &tree_arg,
    ];
    let first = measure(&tb, &import_args, &[], true)?;
    let summary: serde_json::Value = serde_json::from_str(first.stdout.trim())
        .map_err(|e| format!("import output: {e}: {}", first.stdout))?;
    let rerun = measure(&tb, &import_args, &[], true)?;
    let daily = measure(&tb, &["--db", db.as_str(), "usage", "daily"], &[], true)?;
    let cc_daily = measure(
        &cc,
        &["daily", "--offline"],
        &[("CLAUDE_CONFIG_DIR", &dir)],
        false,
    )?;

    let mb = bytes as f64 / 1e6;
    let import_mbs = mb / first.seconds;
    let cc_mbs = mb / cc_daily.seconds;
    let speedup = cc_daily.seconds / daily.seconds;
    let cpu = |m: &Measured| {
        m.cpu_seconds
            .map_or_else(|| "n/a".to_owned(), |s| format!("{s:.2} s"))
    };
    let per_cpu = |m: &Measured| {
        m.cpu_seconds
            .map_or_else(|| "n/a".to_owned(), |s| format!("{:.1} MB/s", mb / s))
    };
    let goal = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!();
    println!(
        "bench-ledger: {:.0} MB tree, {} files, {} responses ({} more stored, shadowed), db {}",
        mb,
        expected["files"],
        expected["responses"],
        expected["shadowed"],
        if args.db.is_some() { "given" } else { "SQLite" }
    );
    println!(
        "  import (first)     {:>8.2} s  {:>7.1} MB/s  peak RSS {:>7}  inserted {}   [>= 150 MB/s: {}; RSS < 200 MB: {}]",
        first.seconds,
        import_mbs,
        rss(&first),
        summary["inserted"],
        goal(import_mbs >= 150.0),
        goal(first.max_rss_kb.is_some_and(|kb| kb < 200 * 1024)),
    );
    println!(
        "  import (rerun)     {:>8.3} s                peak RSS {:>7}   [< 1 s: {}]",
        rerun.seconds,
        rss(&rerun),
        goal(rerun.seconds < 1.0)
    );
    println!(
        "  usage daily        {:>8.3} s                peak RSS {:>7}   [>= 10x faster than ccusage daily: {:.1}x {}]",
        daily.seconds,
        rss(&daily),
        speedup,
        goal(speedup >= 10.0)
    );
    println!(
        "  ccusage daily      {:>8.2} s  {:>7.1} MB/s  peak RSS {:>7}  ({} {})   [first import no slower: {}]",
        cc_daily.seconds,
        cc_mbs,
        rss(&cc_daily),
        cc.display(),
        version(&cc),
        goal(first.seconds <= cc_daily.seconds)
    );
    println!(
        "  CPU (user + sys)   import {} ({} per CPU second), rerun {}, usage daily {}, ccusage daily {} ({} per CPU second, not pinned)",
        cpu(&first),
        per_cpu(&first),
        cpu(&rerun),
        cpu(&daily),
        cpu(&cc_daily),
        per_cpu(&cc_daily),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_and_bad_ones_are_refused() {
        let a = parse(&["--size".into(), "50".into(), "--db".into(), "x".into()]).unwrap();
        assert_eq!((a.size_mb, a.db.as_deref()), (50, Some("x")));
        assert_eq!(parse(&[]).unwrap().size_mb, 1000);
        assert!(parse(&["--size".into(), "big".into()]).is_err());
        assert!(parse(&["--what".into()]).is_err());
    }
}
