//! `import claude-code`, `usage …` and `usage verify` through the real binary, on SQLite and
//! Postgres: exact totals of a generated tree with every trap, resume after `kill -9` at
//! random points (repeatedly), two imports at once, a rerun that imports nothing, and a
//! tampered row caught by verify.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::Scratch;
use tokenbudget_ledger::testkit::fixture::{self, Expected, Spec};

fn tree(dir: &Path) -> Expected {
    // Big enough (about 10 MB) that a kill lands in the middle of an import.
    let spec = Spec {
        projects: 3,
        sessions: 4,
        responses: 150,
        padding: 2_000,
        ..Spec::default()
    };
    fixture::generate(dir, &spec).unwrap()
}

fn import(s: &Scratch, db: &str, tree: &Path) -> Value {
    s.run(&[
        "--db",
        db,
        "--json",
        "import",
        "claude-code",
        tree.to_str().unwrap(),
    ])
    .json()
}

fn daily_total(s: &Scratch, db: &str) -> Value {
    let report = s.run(&["--db", db, "--json", "usage", "daily"]).json();
    report["total"].clone()
}

fn assert_totals(s: &Scratch, db: &str, expected: &Expected) {
    let total = daily_total(s, db);
    let u = &expected.total.usage;
    assert_eq!(total["responses"], expected.total.records, "{total}");
    assert_eq!(total["usage"]["input"], u.input);
    assert_eq!(total["usage"]["output"], u.output);
    assert_eq!(total["usage"]["cache_write_5m"], u.cache_write_5m);
    assert_eq!(total["usage"]["cache_write_1h"], u.cache_write_1h);
    assert_eq!(total["usage"]["cache_read"], u.cache_read);
    assert_eq!(total["usage"]["web_search_requests"], u.web_search_requests);
}

/// A random duration below `max_ms` (the test's only randomness: where the kill lands).
fn random_ms(max_ms: u64) -> Duration {
    Duration::from_millis((uuid::Uuid::new_v4().as_u128() % u128::from(max_ms)) as u64)
}

fn scenario(s: &Scratch, db: &str, db2: &str) {
    let tree_dir = s.path().join("projects");
    let expected = tree(&tree_dir);
    let tree_arg = tree_dir.to_str().unwrap();

    // Kill -9 at random points, again and again, then let one run finish.
    let mut killed = 0;
    for _ in 0..8 {
        let mut child = s
            .command(&["--db", db, "--json", "import", "claude-code", tree_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(random_ms(400));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    eprintln!("killed {killed} of 8 imports mid-run");
    let last = import(s, db, tree_arg.as_ref());
    assert_eq!(last["errors"], serde_json::json!([]));
    assert_totals(s, db, &expected);
    let verify = s.run(&["--db", db, "--json", "usage", "verify", tree_arg]);
    let report = verify.json();
    assert_eq!(report["expected"]["records"], expected.total.records);

    // Nothing new: nothing read.
    let rerun = import(s, db, tree_arg.as_ref());
    assert_eq!(rerun["inserted"], 0);
    assert_eq!(rerun["bytes_read"], 0);
    assert_eq!(rerun["files_unchanged"], expected.files.len());

    // Two imports at once on a fresh database: both succeed, nothing doubles.
    let children: Vec<_> = (0..2)
        .map(|_| {
            s.command(&["--db", db2, "--json", "import", "claude-code", tree_arg])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut inserted = 0;
    for child in children {
        let run = support::Run::from(child.wait_with_output().unwrap());
        inserted += run.json()["inserted"].as_u64().unwrap();
    }
    assert_eq!(
        inserted,
        expected.total.records + expected.shadowed,
        "each record (the shadowed bare copies of rule 6 too) inserted by exactly one"
    );
    assert_totals(s, db2, &expected);

    // Every report runs and sums to the same total.
    for period in ["daily", "weekly", "monthly", "session", "blocks", "models"] {
        let r = s
            .run(&["--db", db, "--json", "usage", period, "--breakdown"])
            .json();
        let sum: u64 = r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["totals"]["responses"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, expected.total.records, "{period}");
        let text = s.run(&["--db", db, "usage", period]).ok().to_owned();
        assert!(
            text.lines().all(|l| l.chars().count() <= 100),
            "{period}:\n{text}"
        );
        assert!(text.contains("Total"), "{text}");
        let csv = s
            .run(&["--db", db, "usage", period, "--csv"])
            .ok()
            .to_owned();
        assert!(csv.starts_with("label,until,gap,model,responses"), "{csv}");
    }
}

/// Changes one stored row behind the ledger's back, then checks verify catches it.
fn verify_catches(s: &Scratch, db: &str, tree: &str) {
    let run = s.run(&["--db", db, "usage", "verify", tree]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stdout.contains("differs: "), "{}", run.stdout);
    assert!(
        run.stderr.contains("the ledger differs from the sources"),
        "{}",
        run.stderr
    );
}

fn used(s: &Scratch, db: &str, budget: &str) -> u64 {
    let status = s
        .run(&["--db", db, "--json", "budget", "status", budget])
        .json();
    status["used"].as_u64().unwrap()
}

fn charge_import(s: &Scratch, db: &str, tree: &str, budget: &str) -> Value {
    s.run(&[
        "--db",
        db,
        "--json",
        "import",
        "claude-code",
        tree,
        "--charge",
        budget,
    ])
    .json()
}

/// One assistant line of `msg_g:req_g` with `output` output tokens (and 1,000 input).
fn growing_line(output: u64) -> String {
    format!(
        r#"{{"sessionId":"s-grow","type":"assistant","requestId":"req_g","timestamp":"2026-11-01T10:00:00.000Z","message":{{"id":"msg_g","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"usage":{{"input_tokens":1000,"output_tokens":{output}}}}}}}
"#
    )
}

/// One assistant line of message `msg_{id}` (1,000 input, 100 output tokens), with the
/// request id `req_r` or without one (rule 6: the same response logged twice).
fn logged_twice_line(id: &str, with_request_id: bool) -> String {
    let request = if with_request_id {
        r#""requestId":"req_r","#
    } else {
        ""
    };
    format!(
        r#"{{"sessionId":"s-twice","type":"assistant",{request}"timestamp":"2026-11-02T10:00:00.000Z","message":{{"id":"msg_{id}","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"usage":{{"input_tokens":1000,"output_tokens":100}}}}}}
"#
    )
}

/// Rule 6 under `--charge`: a response logged with and without its request id, the two lines
/// read by two imports (two batches), in either order, is charged once.
fn charge_logged_twice(s: &Scratch, db: &str) {
    for (budget, first_with) in [("twice-a", true), ("twice-b", false)] {
        let dir = s.path().join(budget).join("proj");
        std::fs::create_dir_all(&dir).unwrap();
        let first = dir.join("s-1.jsonl");
        let second = dir.join("s-2.jsonl");
        std::fs::write(&first, logged_twice_line(budget, first_with)).unwrap();
        std::fs::write(&second, logged_twice_line(budget, !first_with)).unwrap();
        s.run(&["--db", db, "budget", "create", budget, "--limit", "1000000"])
            .ok();
        charge_import(s, db, first.to_str().unwrap(), budget);
        assert_eq!(used(s, db, budget), 1_100, "{budget}");
        let later = charge_import(s, db, second.to_str().unwrap(), budget);
        assert_eq!(later["charge"]["amount"], 0, "{budget}: {later}");
        assert_eq!(
            used(s, db, budget),
            1_100,
            "{budget}: one response, charged once"
        );
    }
}

/// `import --charge`: an unknown budget imports nothing; kills, a final run, a rerun and two
/// concurrent imports charge each response exactly once; a response whose final snapshot
/// arrives in a later run is topped up to its final usage, not charged twice.
fn charge_scenario(s: &Scratch, db: &str, db2: &str) -> Expected {
    let tree_dir = s.path().join("charged");
    let expected = tree(&tree_dir);
    let tree_arg = tree_dir.to_str().unwrap();
    let total = expected.total.usage.total_tokens();

    let unknown = s.run(&[
        "--db",
        db,
        "import",
        "claude-code",
        tree_arg,
        "--charge",
        "nope",
    ]);
    assert_eq!(unknown.code, 1, "{unknown:#?}");
    assert!(unknown.stderr.contains("nope"), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("nothing imported"),
        "{}",
        unknown.stderr
    );
    assert_eq!(daily_total(s, db)["responses"], 0);

    for db in [db, db2] {
        s.run(&[
            "--db",
            db,
            "budget",
            "create",
            "team",
            "--limit",
            "100000000000",
        ])
        .ok();
    }
    for _ in 0..4 {
        let mut child = s
            .command(&[
                "--db",
                db,
                "--json",
                "import",
                "claude-code",
                tree_arg,
                "--charge",
                "team",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(random_ms(400));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
        }
        child.wait().unwrap();
    }
    let last = charge_import(s, db, tree_arg, "team");
    assert_eq!(last["errors"], serde_json::json!([]));
    assert_totals(s, db, &expected);
    assert_eq!(used(s, db, "team"), total, "each response charged once");
    let rerun = charge_import(s, db, tree_arg, "team");
    assert_eq!(rerun["charge"]["charged"], 0, "{rerun}");
    assert_eq!(used(s, db, "team"), total);

    // Two imports at once on a fresh database.
    let children: Vec<_> = (0..2)
        .map(|_| {
            s.command(&[
                "--db",
                db2,
                "--json",
                "import",
                "claude-code",
                tree_arg,
                "--charge",
                "team",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in children {
        let run = support::Run::from(child.wait_with_output().unwrap());
        assert_eq!(run.code, 0, "{run:#?}");
    }
    assert_eq!(used(s, db2, "team"), total);
    assert_totals(s, db2, &expected);

    // A response seen first as a snapshot, then final in a later run: topped up.
    let grow = s.path().join("grow").join("proj");
    std::fs::create_dir_all(&grow).unwrap();
    let file = grow.join("s-grow.jsonl");
    std::fs::write(&file, growing_line(10)).unwrap();
    let grow_arg = grow.to_str().unwrap();
    s.run(&[
        "--db", db2, "budget", "create", "grow", "--limit", "1000000",
    ])
    .ok();
    let first = charge_import(s, db2, grow_arg, "grow");
    assert_eq!(first["charge"]["charged"], 1, "{first}");
    assert_eq!(used(s, db2, "grow"), 1_010);
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(&growing_line(250));
    std::fs::write(&file, text).unwrap();
    let second = charge_import(s, db2, grow_arg, "grow");
    assert_eq!(second["charge"]["topped_up"], 1, "{second}");
    assert_eq!(used(s, db2, "grow"), 1_250);
    // Read again from the start (another path to the same lines): nothing more.
    let again = charge_import(s, db2, file.to_str().unwrap(), "grow");
    assert_eq!(again["charge"]["amount"], 0, "{again}");
    assert_eq!(used(s, db2, "grow"), 1_250);
    charge_logged_twice(s, db2);
    expected
}

#[test]
fn import_charge_on_sqlite() {
    let s = Scratch::new();
    let (db, db2) = (s.db("charge.db"), s.db("charge2.db"));
    let expected = charge_scenario(&s, &db, &db2);
    // Every record is stored with the budget it was charged to, but the bare copies that
    // rule 6 shadows (not charged: their sibling was).
    let (all, charged): (i64, i64) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
            sqlx::query_as(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE budget = 'team') FROM usage_records",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap()
        });
    assert!(all > 0);
    assert_eq!(all - charged, expected.shadowed as i64);
}

#[cfg(feature = "postgres")]
#[test]
fn import_charge_on_postgres() {
    let Some((base, admin, rt)) = postgres_admin() else {
        return;
    };
    let schemas = [
        format!("tb_charge_{}", uuid::Uuid::new_v4().simple()),
        format!("tb_charge_{}", uuid::Uuid::new_v4().simple()),
    ];
    let s = Scratch::new();
    charge_scenario(
        &s,
        &format!("{base}?schema={}", schemas[0]),
        &format!("{base}?schema={}", schemas[1]),
    );
    rt.block_on(async {
        for schema in &schemas {
            let _ = admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await;
        }
    });
}

/// The Postgres base URL, an admin client and its runtime; `None` (a skip) when Postgres is
/// unreachable, which under `CI=true` is a failure.
#[cfg(feature = "postgres")]
fn postgres_admin() -> Option<(String, tokio_postgres::Client, tokio::runtime::Runtime)> {
    let base = std::env::var("TOKENBUDGET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = rt.block_on(async {
        match tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                Some(client)
            }
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "Postgres is unreachable under CI=true: {e}"
                );
                eprintln!("skipping: Postgres is unreachable: {e}");
                None
            }
        }
    })?;
    Some((base, admin, rt))
}

#[test]
fn import_resume_concurrency_reports_and_verify_on_sqlite() {
    let s = Scratch::new();
    let db = s.db("ledger.db");
    scenario(&s, &db, &s.db("second.db"));
    let tree = s.path().join("projects");
    let tree = tree.to_str().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
            sqlx::query(
                "UPDATE usage_records SET output = output - 1
                 WHERE dedup_key = (SELECT min(dedup_key) FROM usage_records)",
            )
            .execute(&mut conn)
            .await
            .unwrap();
        });
    verify_catches(&s, &db, tree);
}

#[cfg(feature = "postgres")]
#[test]
fn import_resume_concurrency_reports_and_verify_on_postgres() {
    let base = std::env::var("TOKENBUDGET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schemas = [
        format!("tb_ledger_{}", uuid::Uuid::new_v4().simple()),
        format!("tb_ledger_{}", uuid::Uuid::new_v4().simple()),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = rt.block_on(async {
        match tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                Some(client)
            }
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "Postgres is unreachable under CI=true: {e}"
                );
                eprintln!("skipping: Postgres is unreachable: {e}");
                None
            }
        }
    });
    let Some(admin) = admin else { return };
    let s = Scratch::new();
    let db = format!("{base}?schema={}", schemas[0]);
    let db2 = format!("{base}?schema={}", schemas[1]);
    scenario(&s, &db, &db2);
    let tree = s.path().join("projects");
    rt.block_on(async {
        admin
            .batch_execute(&format!(
                "UPDATE \"{}\".usage_records SET cache_read = cache_read + 1
                 WHERE dedup_key = (SELECT min(dedup_key) FROM \"{}\".usage_records)",
                schemas[0], schemas[0]
            ))
            .await
            .unwrap();
    });
    verify_catches(&s, &db, tree.to_str().unwrap());
    rt.block_on(async {
        for schema in &schemas {
            let _ = admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await;
        }
    });
}
