//! Finding Claude Code transcripts: the default data directories and the `.jsonl` files
//! under a directory, each with its project and session.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::parse::FileContext;

/// One transcript to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its name in the ledger and its context.
    pub ctx: FileContext,
}

/// The Claude Code data directories that exist, in order: every `projects` directory under
/// the comma-separated `$CLAUDE_CONFIG_DIR` entries (or the entry itself when it has none),
/// then `~/.config/claude/projects` and `~/.claude/projects`. Duplicates (by canonical path)
/// are listed once.
pub fn default_roots(config_dir: Option<&str>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dirs) = config_dir {
        for dir in dirs.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            let projects = dir.join("projects");
            candidates.push(if projects.is_dir() { projects } else { dir });
        }
    }
    if let Some(home) = home {
        candidates.push(home.join(".config/claude/projects"));
        candidates.push(home.join(".claude/projects"));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    for c in candidates {
        if let Ok(canonical) = c.canonicalize() {
            if canonical.is_dir() && !roots.contains(&canonical) {
                roots.push(canonical);
            }
        }
    }
    roots
}

/// Every `.jsonl` file under `root` (or `root` itself if it is a file), sorted by path.
///
/// A file's project is the first directory under `root` it is in (Claude Code's
/// `projects/<project>/`); its fallback session id is its stem, or, for
/// `<session>/subagents/*.jsonl`, the session directory's name. `machine` labels every record.
pub fn discover(root: &Path, machine: &str) -> Result<Vec<SourceFile>> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    let root = root.canonicalize().map_err(io(root))?;
    let mut files = Vec::new();
    if root.is_file() {
        files.push(root.clone());
    } else {
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let entry = entry.map_err(io(&dir))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(io(&path))?;
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() && path.extension().is_some_and(|e| e == "jsonl") {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|path| {
            let ctx = context(&root, &path, machine);
            SourceFile { path, ctx }
        })
        .collect())
}

/// The context of `path` found under `root`.
pub fn context(root: &Path, path: &Path, machine: &str) -> FileContext {
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let relative = path.strip_prefix(root).unwrap_or(path);
    let mut parts = relative.components();
    let project = match (parts.next(), parts.next()) {
        (Some(first), Some(_)) => first.as_os_str().to_string_lossy().into_owned(),
        // A file given directly, or directly under the root: its directory names the project.
        _ => name(path.parent()),
    };
    let parent = path.parent();
    let session = if parent
        .and_then(Path::file_name)
        .is_some_and(|n| n == "subagents")
    {
        name(parent.and_then(Path::parent))
    } else {
        stem(path)
    };
    FileContext {
        file: path.display().to_string(),
        project,
        session,
        machine: machine.to_owned(),
    }
}
