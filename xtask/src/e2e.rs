//! `cargo xtask e2e`: real clients through the gateway against the in-repo fake upstream.
//!
//! Installs what it needs under `target/e2e` (npm `@anthropic-ai/claude-code`; a Python venv
//! with `anthropic` and `openai`), then runs: the real Claude Code CLI for a plain answer, a
//! tool-use loop, a refusal it shows without retrying, and per-session phases; through
//! translated routes to fake OpenAI-compatible servers, a plain answer, a tool-use loop in
//! Ollama's deltas, a 40 s first byte and an answer cut mid-stream; the official Python SDKs
//! streaming through the gateway. Every scenario checks the budget against what
//! the fake reported. Nothing leaves 127.0.0.1.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::run::{cargo, project_root, run, Result};

/// Children killed when the run ends, however it ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A named check.
type Scenario<'a> = (&'static str, Box<dyn Fn() -> Result + 'a>);

struct Env {
    dir: PathBuf,
    bin: PathBuf,
    db: String,
    claude: PathBuf,
    python: PathBuf,
}

pub fn main(_args: &[String]) -> Result {
    let root = project_root();
    let e2e = root.join("target/e2e");
    fs::create_dir_all(&e2e).map_err(|e| format!("creating {}: {e}", e2e.display()))?;
    run(cargo().args([
        "build",
        "-p",
        "tokenbudget-cli",
        "--bin",
        "tokenbudget",
        "-p",
        "tokenbudget-gateway",
        "--bin",
        "tokenbudget-fake-upstream",
    ]))?;
    install(&e2e)?;
    let dir = e2e.join(format!("run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("home")).map_err(|e| e.to_string())?;
    fs::create_dir_all(dir.join("work")).map_err(|e| e.to_string())?;
    let env = Env {
        db: format!("sqlite://{}", dir.join("tb.db").display()),
        bin: root.join("target/debug"),
        claude: e2e.join("node_modules/.bin/claude"),
        python: e2e.join("venv/bin/python"),
        dir,
    };
    let mut procs = Procs(Vec::new());
    let text_url = start_fake(&env, "text", &mut procs)?;
    let tool_url = start_fake(&env, "tool", &mut procs)?;
    let gw_text = start_gateway(&env, &text_url, "text", &mut procs)?;
    let gw_tool = start_gateway(&env, &tool_url, "tool", &mut procs)?;
    // Gateways whose config routes every model, translated, to a fake OpenAI-compatible
    // server: one streaming its tool call as Ollama does (no `index`), one answering plain
    // text, one whose first byte takes 40 s (a local model loading), one cutting its answer.
    let gw_ollama = start_translated(&env, "tool:ollama", "ollama", &tool_url, &mut procs)?;
    let gw_local = start_translated(&env, "text", "local", &tool_url, &mut procs)?;
    let gw_loading = start_translated(&env, "slow=40s", "loading", &tool_url, &mut procs)?;
    let gw_cut = start_translated(&env, "cut", "cut", &tool_url, &mut procs)?;

    let mut passed = 0;
    let mut failed = Vec::new();
    let scenarios: Vec<Scenario<'_>> = vec![
        (
            "claude code: plain answer",
            Box::new(|| plain_answer(&env, &gw_text)),
        ),
        (
            "claude code: tool-use loop",
            Box::new(|| tool_loop(&env, &gw_tool)),
        ),
        (
            "claude code: refusal shown, not retried",
            Box::new(|| refusal(&env, &gw_text)),
        ),
        (
            "claude code: per-session phases",
            Box::new(|| sessions(&env, &gw_text)),
        ),
        (
            "claude code: tool-use loop translated to an Ollama-dialect OpenAI server",
            Box::new(|| translated_tool_loop(&env, &gw_ollama)),
        ),
        (
            "claude code: plain answer translated to an OpenAI-compatible server",
            Box::new(|| translated_answer(&env, &gw_local)),
        ),
        (
            "claude code: a translated route whose first byte takes 40 s",
            Box::new(|| slow_first_byte(&env, &gw_loading)),
        ),
        (
            "claude code: a translated answer cut mid-stream",
            Box::new(|| cut_mid_answer(&env, &gw_cut)),
        ),
        (
            "python sdks: anthropic and openai streaming",
            Box::new(|| python_sdks(&env, &gw_text)),
        ),
    ];
    for (name, scenario) in &scenarios {
        match scenario() {
            Ok(()) => {
                eprintln!("e2e ok: {name}");
                passed += 1;
            }
            Err(e) => {
                eprintln!("e2e FAILED: {name}: {e}");
                failed.push(*name);
            }
        }
    }
    drop(procs);
    println!("e2e: {passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}

fn install(e2e: &Path) -> Result {
    if !e2e.join("node_modules/.bin/claude").exists() {
        run(Command::new("npm").current_dir(e2e).args([
            "install",
            "--no-audit",
            "--no-fund",
            "@anthropic-ai/claude-code",
        ]))?;
    }
    if !e2e.join("venv/bin/python").exists() {
        run(Command::new("python3")
            .current_dir(e2e)
            .args(["-m", "venv", "venv"]))?;
    }
    let python = e2e.join("venv/bin/python");
    let probe = Command::new(&python)
        .args(["-c", "import anthropic, openai"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        run(Command::new(&python).args(["-m", "pip", "install", "-q", "anthropic", "openai"]))?;
    }
    Ok(())
}

fn wait_for_file(path: &Path, what: &str, pred: impl Fn(&str) -> Option<String>) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(found) = fs::read_to_string(path).ok().and_then(|t| pred(&t)) {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not start (see {})", path.display()))
}

fn start_fake(env: &Env, mode: &str, procs: &mut Procs) -> Result<String> {
    let url_file = env.dir.join(format!("fake-{mode}.url"));
    let child = Command::new(env.bin.join("tokenbudget-fake-upstream"))
        .args([mode, &url_file.to_string_lossy()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the fake upstream: {e}"))?;
    procs.0.push(child);
    wait_for_file(&url_file, "the fake upstream", |t| {
        (!t.is_empty()).then(|| t.trim().to_owned())
    })
}

fn start_gateway(env: &Env, upstream: &str, name: &str, procs: &mut Procs) -> Result<String> {
    start_gateway_with(env, upstream, name, None, procs)
}

fn start_gateway_with(
    env: &Env,
    upstream: &str,
    name: &str,
    config: Option<&Path>,
    procs: &mut Procs,
) -> Result<String> {
    let log = env.dir.join(format!("gateway-{name}.log"));
    let file = fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new(env.bin.join("tokenbudget"))
        .args([
            "--db",
            &env.db,
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--anthropic-url",
            upstream,
        ])
        .arg("--openai-url")
        .arg(format!("{upstream}/v1"))
        .args(
            config
                .map(|c| vec!["--config".to_owned(), c.display().to_string()])
                .unwrap_or_default(),
        )
        .env("ANTHROPIC_API_KEY", "sk-ant-e2e-gateway-own")
        .env("OPENAI_API_KEY", "sk-openai-e2e-gateway-own")
        .stderr(file)
        .spawn()
        .map_err(|e| format!("starting the gateway: {e}"))?;
    procs.0.push(child);
    wait_for_file(&log, "the gateway", |t| {
        t.lines()
            .find_map(|l| l.strip_prefix("tokenbudget gateway listening on "))
            .map(str::to_owned)
    })
}

/// A fake OpenAI-compatible server in `mode`, and a gateway whose config routes every
/// model to it, translated (`fallback` is its Anthropic upstream, which no request reaches).
fn start_translated(
    env: &Env,
    mode: &str,
    name: &str,
    fallback: &str,
    procs: &mut Procs,
) -> Result<String> {
    let url = start_fake(env, mode, procs)?;
    let config = env.dir.join(format!("gateway-{name}.toml"));
    fs::write(
        &config,
        format!(
            "[upstreams.local]\nkind = \"openai\"\nurl = \"{url}/v1\"\n\n[[routes]]\nmatch = \"*\"\nupstream = \"local\"\nmodel = \"qwen3-coder-30b\"\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    start_gateway_with(env, fallback, name, Some(&config), procs)
}

fn tb(env: &Env, args: &[&str]) -> Result<String> {
    let out = Command::new(env.bin.join("tokenbudget"))
        .arg("--db")
        .arg(&env.db)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "tokenbudget {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn used(env: &Env, budget: &str) -> Result<(u64, u64)> {
    // The gateway settles just after the response ends: give it a moment to land.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: Value =
            serde_json::from_str(&tb(env, &["--json", "budget", "status", budget])?)
                .map_err(|e| e.to_string())?;
        let used = status["used"].as_u64().unwrap_or(0);
        let held = status["held"].as_u64().unwrap_or(u64::MAX);
        if held == 0 || Instant::now() > deadline {
            return Ok((used, held));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn budget_with_key(env: &Env, budget: &str, limit: u64, extra: &[&str]) -> Result<String> {
    tb(
        env,
        &["budget", "create", budget, "--limit", &limit.to_string()],
    )?;
    let mut args = vec!["key", "create", "--budget", budget];
    args.extend_from_slice(extra);
    let key = tb(env, &args)?;
    if !key.starts_with("tbk_") || key.lines().count() != 1 {
        return Err(format!("key create printed {key:?}"));
    }
    Ok(key)
}

fn claude(
    env: &Env,
    gateway: &str,
    key: &str,
    prompt: &str,
    extra: &[&str],
) -> Result<(bool, Value)> {
    claude_with(env, gateway, key, prompt, extra, &[])
}

/// The longest one Claude Code run may take (the slowest case waits 40 s for a first byte).
const CLAUDE_LIMIT: Duration = Duration::from_secs(240);

/// [`claude`] with more environment variables.
fn claude_with(
    env: &Env,
    gateway: &str,
    key: &str,
    prompt: &str,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> Result<(bool, Value)> {
    let child = Command::new(&env.claude)
        .envs(vars.iter().copied())
        .current_dir(env.dir.join("work"))
        .args(["-p", prompt, "--output-format", "json"])
        .args(extra)
        .env("HOME", env.dir.join("home"))
        .env("ANTHROPIC_BASE_URL", gateway)
        .env("ANTHROPIC_API_KEY", key)
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running claude: {e}"))?;
    // A hang is a failure, not a stuck CI: past the limit the process is killed.
    let pid = child.id().to_string();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let hung = matches!(
            finished.recv_timeout(CLAUDE_LIMIT),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        if hung {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        hung
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for claude: {e}"))?;
    let _ = done.send(());
    if watchdog.join().unwrap_or(false) {
        return Err(format!("claude did not finish within {CLAUDE_LIMIT:?}"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "claude printed no JSON ({e}): {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.success(), value))
}

fn reported(value: &Value) -> u64 {
    let u = &value["usage"];
    [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    ]
    .iter()
    .map(|k| u[*k].as_u64().unwrap_or(0))
    .sum()
}

fn plain_answer(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-plain", 1_000_000, &["--name", "plain"])?;
    let (ok, v) = claude(env, gw, &key, "Say hello", &[])?;
    if !ok || v["result"] != "Hello from the fake upstream." {
        return Err(format!("unexpected result: {v}"));
    }
    let (used, held) = used(env, "e2e-plain")?;
    if used != reported(&v) || held != 0 {
        return Err(format!(
            "budget used {used} (held {held}), Claude Code reported {}",
            reported(&v)
        ));
    }
    Ok(())
}

fn tool_loop(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-tool", 2_000_000, &[])?;
    let (ok, v) = claude(
        env,
        gw,
        &key,
        "Run the echo tool",
        &["--allowedTools", "Bash"],
    )?;
    let result = v["result"].as_str().unwrap_or("");
    // The fake's second answer quotes the tool_result Claude Code sent back: proof the tool
    // ran and its output came back through the gateway.
    if !ok || !result.contains("The tool said: Hello from the fake upstream.") {
        return Err(format!("no tool round trip: {v}"));
    }
    if v["num_turns"].as_u64().unwrap_or(0) < 2 {
        return Err(format!("expected two turns: {v}"));
    }
    let (used, held) = used(env, "e2e-tool")?;
    if used != reported(&v) || held != 0 {
        return Err(format!(
            "budget used {used} (held {held}), Claude Code reported {}",
            reported(&v)
        ));
    }
    Ok(())
}

fn translated_tool_loop(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-ollama", 2_000_000, &[])?;
    let (ok, v) = claude(
        env,
        gw,
        &key,
        "Run the echo tool",
        &["--allowedTools", "Bash"],
    )?;
    let result = v["result"].as_str().unwrap_or("");
    // The second answer quotes the `tool` message the gateway translated Claude Code's
    // tool_result into: the call arrived in Ollama's deltas, ran, and came back.
    if !ok || !result.contains("The tool said: Hello from the fake upstream.") {
        return Err(format!("no translated tool round trip: {v}"));
    }
    let (used, held) = used(env, "e2e-ollama")?;
    if used == 0 || held != 0 {
        return Err(format!("budget used {used} (held {held})"));
    }
    if used != reported(&v) {
        eprintln!(
            "e2e note: translated budget used {used}, Claude Code reported {}",
            reported(&v)
        );
    }
    Ok(())
}

fn translated_answer(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-local", 1_000_000, &[])?;
    let (ok, v) = claude(env, gw, &key, "Say hello", &[])?;
    if !ok || v["result"] != "Hello from the fake upstream." {
        return Err(format!("unexpected result: {v}"));
    }
    settled_as_reported(env, "e2e-local", &v)
}

fn slow_first_byte(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-loading", 1_000_000, &[])?;
    let started = Instant::now();
    let (ok, v) = claude(env, gw, &key, "Say hello", &[])?;
    let waited = started.elapsed();
    if !ok || v["result"] != "Hello from the fake upstream." {
        return Err(format!("Claude Code gave up on a slow first byte: {v}"));
    }
    // Proof that the silence really happened: the fake held its first byte for 40 s, so
    // Claude Code waited through it (on the gateway's pings) instead of retrying sooner.
    if waited < Duration::from_secs(40) {
        return Err(format!("answered after {waited:?}: the fake did not hold"));
    }
    settled_as_reported(env, "e2e-loading", &v)
}

fn cut_mid_answer(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-cut", 1_000_000, &[])?;
    // On a failed stream Claude Code normally retries without streaming, and the fake cuts
    // that answer too: a 502 it retries with backoff for about three minutes before showing
    // it (seen with 2.1.197). With that fallback off, the stream's own end is what it
    // reports.
    let (_, v) = claude_with(
        env,
        gw,
        &key,
        "Say hello",
        &[],
        &[("CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK", "1")],
    )?;
    let result = v["result"].as_str().unwrap_or("");
    // Claude Code shows the gateway's `error` event and stops: it neither hangs nor takes
    // the cut text for a complete answer.
    if v["is_error"] != true || !result.contains("ended before the answer was complete") {
        return Err(format!("the cut was not reported as an error: {v}"));
    }
    let (used, held) = used(env, "e2e-cut")?;
    // The text streamed before the cut was spent upstream: settled as partial, not free.
    if used == 0 || held != 0 {
        return Err(format!("a cut answer settled {used} (held {held})"));
    }
    Ok(())
}

/// The budget settled what Claude Code reported, and holds nothing.
fn settled_as_reported(env: &Env, budget: &str, v: &Value) -> Result {
    let (used, held) = used(env, budget)?;
    if used != reported(v) || held != 0 {
        return Err(format!(
            "budget {budget} used {used} (held {held}), Claude Code reported {}",
            reported(v)
        ));
    }
    Ok(())
}

fn refusal(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-tiny", 1_000, &[])?;
    let started = Instant::now();
    let (ok, v) = claude(env, gw, &key, "Say hello", &[])?;
    let result = v["result"].as_str().unwrap_or("");
    if ok || !result.contains("budget e2e-tiny has 1000 tokens left") {
        return Err(format!("refusal not shown: {v}"));
    }
    // Retrying would show as several attempts and backoff seconds; Claude Code reports one
    // API error and stops.
    if started.elapsed() > Duration::from_secs(60) {
        return Err("Claude Code kept retrying the refusal".into());
    }
    let (used, held) = used(env, "e2e-tiny")?;
    if used != 0 || held != 0 {
        return Err(format!("a refusal spent {used} (held {held})"));
    }
    Ok(())
}

fn sessions(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-team", 10_000_000, &["--session-limit", "500000"])?;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (ok, v) = claude(env, gw, &key, "Say hello", &[])?;
        let session = v["session_id"].as_str().unwrap_or("").to_owned();
        if !ok || session.is_empty() {
            return Err(format!("no session: {v}"));
        }
        let phase = format!("e2e-team:session:{session}");
        let (used, held) = used(env, &phase)?;
        if used != reported(&v) || held != 0 {
            return Err(format!(
                "phase {phase} used {used}, Claude Code reported {}",
                reported(&v)
            ));
        }
        ids.push(session);
    }
    if ids[0] == ids[1] {
        return Err("two runs shared a session".into());
    }
    let (team, _) = used(env, "e2e-team")?;
    let list = tb(env, &["budget", "list"])?;
    if !ids.iter().all(|id| list.contains(id.as_str())) || team == 0 {
        return Err(format!("session phases missing under e2e-team: {list}"));
    }
    Ok(())
}

const PYTHON: &str = r#"
import sys, anthropic, openai
base, key = sys.argv[1], sys.argv[2]
a = anthropic.Anthropic(base_url=base, api_key=key)
text = ""
with a.messages.stream(model="claude-sonnet-4-5", max_tokens=500, messages=[{"role": "user", "content": "hi"}]) as s:
    for t in s.text_stream:
        text += t
    final = s.get_final_message()
assert text == "Hello from the fake upstream.", text
a_used = final.usage.input_tokens + final.usage.output_tokens
o = openai.OpenAI(base_url=base + "/v1", api_key=key)
chunks = list(o.chat.completions.create(model="gpt-4o", max_tokens=500, stream=True, messages=[{"role": "user", "content": "hi"}]))
otext = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert otext == "Hello from the fake upstream.", otext
assert all(c.usage is None for c in chunks), "the usage chunk the gateway asked for leaked"
try:
    anthropic.Anthropic(base_url=base, api_key="tbk_unknown", max_retries=0).messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    raise SystemExit("unknown key accepted")
except anthropic.AuthenticationError:
    pass
print(a_used + 30)
"#;

fn python_sdks(env: &Env, gw: &str) -> Result {
    let key = budget_with_key(env, "e2e-sdk", 1_000_000, &[])?;
    let out = Command::new(&env.python)
        .args(["-c", PYTHON, gw, &key])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("python: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let expected: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("python output: {e}"))?;
    let (used, held) = used(env, "e2e-sdk")?;
    if used != expected || held != 0 {
        return Err(format!(
            "budget used {used} (held {held}), SDKs saw {expected}"
        ));
    }
    Ok(())
}
