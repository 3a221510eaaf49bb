//! Bad input and failures: the exit code, and one clear line on stderr, never a panic.

// The CLI's default store; every test here uses it.
#![cfg(feature = "sqlite")]

mod support;

use support::Scratch;

const NO_SUCH: &str = "01234567-89ab-7def-8123-456789abcdef";

fn with_budget() -> (Scratch, String) {
    let s = Scratch::new();
    let db = s.db("e.db");
    s.run(&["--db", &db, "budget", "create", "wf", "--limit", "100"])
        .ok();
    (s, db)
}

#[test]
fn bad_usage_exits_2() {
    let (s, db) = with_budget();
    let db = db.as_str();
    for (args, needle) in [
        (vec![], "missing command"),
        (vec!["budget"], "missing command"),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (vec!["--db", db, "reserve", "wf"], "<AMOUNT>"),
        (
            vec!["--db", db, "reserve", "wf", "ten"],
            "invalid amount \"ten\": expected a whole number of tokens",
        ),
        (
            vec!["--db", db, "reserve", "wf", "5", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (
            vec!["--db", db, "reserve", "no spaces", "5"],
            "invalid budget id \"no spaces\"",
        ),
        (
            vec!["--db", db, "reserve", "wf", "5", "--timeout", "soon"],
            "--timeout",
        ),
        (
            vec!["--db", db, "reserve", "wf", "5", "--timeout", "0s"],
            "invalid reservation timeout",
        ),
        (
            vec!["--db", db, "reserve", "wf", "5", "--idempotency-key", ""],
            "--idempotency-key",
        ),
        (
            vec!["--db", db, "reserve", "wf", "0"],
            "invalid tokens: 0 is outside 1..=9223372036854775807",
        ),
        (
            vec!["--db", db, "reserve", "wf", "9223372036854775808"],
            "invalid tokens",
        ),
        (
            vec!["--db", db, "reserve", "wf", "99999999999999999999"],
            "number too large",
        ),
        (
            vec!["--db", db, "commit", "not-a-uuid", "5"],
            "invalid reservation id \"not-a-uuid\"",
        ),
        (vec!["--db", db, "commit", NO_SUCH, "-5"], "-5"),
        (
            vec!["--db", db, "rollback", "1234"],
            "invalid reservation id",
        ),
        (
            vec!["--db", db, "budget", "create", "x", "--limit", "0"],
            "invalid limit: 0",
        ),
        (
            vec!["--db", db, "budget", "create", "x"],
            "--limit <AMOUNT>",
        ),
        (
            vec!["--db", db, "budget", "events", "wf", "--after", "-1"],
            "'-1'",
        ),
        (
            vec!["--db", "budgets.db", "budget", "list"],
            "invalid store URL \"budgets.db\"",
        ),
        (
            vec!["--db", "redis://localhost", "budget", "list"],
            "no store is registered for URL scheme `redis:`",
        ),
        (
            vec!["--db", "memory://named", "budget", "list"],
            "invalid store URL",
        ),
        (
            vec!["--db", db, "dashboard", "--listen", "0.0.0.0:0"],
            "not a loopback address: give it a token",
        ),
        (
            vec!["--db", db, "dashboard", "--token", "short"],
            "--token: a dashboard token must be at least 16 characters",
        ),
        (
            vec!["count", "--provider", "gemini"],
            "invalid value 'gemini' for '--provider",
        ),
    ] {
        let run = s.run(&args);
        let line = run.fails(2, needle);
        assert!(line.starts_with("tokenbudget: "), "{line}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
}

#[test]
fn errors_about_the_state_of_the_budgets_exit_1() {
    let (s, db) = with_budget();
    let db = db.as_str();
    let id = s
        .run(&["--db", db, "reserve", "wf", "10"])
        .ok()
        .trim()
        .to_owned();
    s.run(&["--db", db, "commit", &id, "7"]).ok();
    for (args, needle) in [
        (
            vec!["--db", db, "budget", "status", "nope"],
            "budget nope not found",
        ),
        (
            vec!["--db", db, "budget", "events", "nope"],
            "budget nope not found",
        ),
        (
            vec!["--db", db, "reserve", "nope", "5"],
            "budget nope not found",
        ),
        (
            vec!["--db", db, "budget", "create", "wf", "--limit", "5"],
            "budget wf already exists",
        ),
        (
            vec![
                "--db", db, "budget", "create", "x", "--limit", "5", "--parent", "nope",
            ],
            "parent budget nope of x not found",
        ),
        (
            vec!["--db", db, "commit", NO_SUCH, "5"],
            &format!("reservation {NO_SUCH} not found"),
        ),
        (vec!["--db", db, "rollback", NO_SUCH], "not found"),
        (vec!["--db", db, "commit", &id, "8"], "is committed"),
        (vec!["--db", db, "rollback", &id], "is committed"),
    ] {
        let run = s.run(&args);
        run.fails(1, needle);
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    // --json does not change the error contract.
    let run = s.run(&["--db", db, "budget", "status", "nope", "--json"]);
    run.fails(1, "budget nope not found");
    assert!(run.stdout.is_empty());
}

#[test]
fn an_unopenable_database_exits_1_naming_it() {
    let s = Scratch::new();
    let run = s.run(&["--db", "sqlite:///no/such/directory/b.db", "budget", "list"]);
    let line = run.fails(1, "opening sqlite:///no/such/directory/b.db");
    assert!(line.contains("sqlite store error"), "{line}");

    // A file that is not a database.
    s.file("junk.db", &"not a database, just text\n".repeat(200));
    let junk = s.db("junk.db");
    s.run(&["--db", &junk, "budget", "list"])
        .fails(1, "opening");
}

#[cfg(feature = "postgres")]
#[test]
fn an_unreachable_postgres_exits_1_without_showing_the_password() {
    let s = Scratch::new();
    let run = s.run(&[
        "--db",
        "postgres://app:hunter2@127.0.0.1:1/budgets",
        "budget",
        "list",
    ]);
    let line = run.fails(1, "opening postgres://app:***@127.0.0.1:1/budgets");
    assert!(!line.contains("hunter2"), "{line}");
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_url_without_the_feature_names_it() {
    let s = Scratch::new();
    let run = s.run(&[
        "--db",
        "postgres://app:hunter2@127.0.0.1/budgets",
        "budget",
        "list",
    ]);
    let line = run.fails(2, "needs feature `postgres`");
    assert!(!line.contains("hunter2"), "{line}");
}

#[test]
fn count_input_errors() {
    let s = Scratch::new();
    fn count<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["count", "--provider", "estimate"], args].concat()
    }
    s.run(&count(&["missing.txt"]))
        .fails(1, "reading missing.txt");
    s.file("bad.json", "{\"role\": \"user\"}");
    s.run(&count(&["--messages", "bad.json"]))
        .fails(1, "bad.json is not a JSON array of chat messages");
    s.run_with_stdin(
        &count(&["--messages"]),
        "[{\"role\": \"wizard\", \"content\": \"hi\"}]",
    )
    .fails(1, "stdin is not a JSON array of chat messages");
    std::fs::write(s.path().join("latin1.txt"), b"caf\xe9").unwrap();
    s.run(&count(&["latin1.txt"]))
        .fails(1, "latin1.txt is not UTF-8 text");
    #[cfg(feature = "claude")]
    s.run(&["count", "--provider", "claude"])
        .fails(2, "--provider claude needs --model");
}
