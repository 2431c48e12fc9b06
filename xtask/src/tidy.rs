//! Workspace policy that neither rustc nor clippy checks: the layers of `docs/ARCHITECTURE.md`,
//! crate docs, leftover `dbg!`/`todo!`, folder names, workspace lints and dependencies, and what
//! crates meant for crates.io need.

#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cmd, layers};

/// Folders that hold no code of ours.
const SKIPPED_DIRS: &[&str] = &["node_modules", "target"];

/// Runs every check and fails with the list of all problems found.
pub(crate) fn run(root: &Path) -> Result<()> {
    let metadata = cmd::metadata(root)?;
    let mut problems = Vec::new();
    problems.extend(check_layers(root, &metadata)?);
    problems.extend(check_lib_docs(root)?);
    problems.extend(check_forbidden_macros(root)?);
    problems.extend(check_server_uses_adapter(root)?);
    problems.extend(check_packages(root, &metadata)?);
    problems.extend(check_publishable(root, &metadata)?);
    if !problems.is_empty() {
        let count = problems.len();
        bail!("{count} tidy problem(s):\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// Every dependency between workspace packages is allowed by the layers block, and the block
/// lists every package.
fn check_layers(root: &Path, metadata: &Value) -> Result<Vec<String>> {
    let page = root.join(layers::PAGE);
    let text = match fs::read_to_string(&page) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Ok(vec![format!(
                "{} does not exist; {}",
                layers::PAGE,
                layers::how_to_add()
            )]);
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", page.display())),
    };
    let allowed = match layers::parse(&text) {
        Ok(allowed) => allowed,
        Err(err) => return Ok(vec![format!("{}: {err:#}", layers::PAGE)]),
    };
    let edges = layers::edges(metadata, env!("CARGO_PKG_NAME"))?;
    Ok(layers::check(&allowed, &edges))
}

/// Every `crates/*/src/lib.rs` opens with a `//!` comment.
fn check_lib_docs(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for dir in crate_dirs(root)? {
        let lib = dir.join("src/lib.rs");
        if !lib.is_file() {
            continue;
        }
        let text = read(&lib)?;
        if !opens_with_inner_doc(&text) {
            problems.push(format!(
                "{} does not start with a `//!` comment",
                relative(root, &lib)
            ));
        }
    }
    Ok(problems)
}

fn opens_with_inner_doc(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with("//!")
}

/// No Rust file under `crates/` mentions `dbg!(` or `todo!(`, even in a comment.
fn check_forbidden_macros(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for file in files_under(&root.join("crates"), &|name| name.ends_with(".rs"))? {
        let text = read(&file)?;
        for (number, needle) in forbidden_macros(&text) {
            problems.push(format!("{}:{number}: `{needle}`", relative(root, &file)));
        }
    }
    Ok(problems)
}

/// The server changes connections, channels and users only through the adapter: of
/// `soketi-channels` it names nothing but `Outbox`, the side through which a connection
/// receives frames (docs/ARCHITECTURE.md, "The subscription lifecycle").
fn check_server_uses_adapter(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let src = root.join("crates/soketi-server/src");
    for file in files_under(&src, &|name| name.ends_with(".rs"))? {
        let text = read(&file)?;
        for (number, used) in channels_items_used(&text) {
            problems.push(format!(
                "{}:{number}: the server uses `soketi_channels::{used}`; it may use only \
                 `Outbox` and reach the registry through the `Adapter`",
                relative(root, &file)
            ));
        }
    }
    Ok(problems)
}

/// Line numbers and paths of what `text` names from `soketi_channels` besides `Outbox`.
fn channels_items_used(text: &str) -> Vec<(usize, String)> {
    const PREFIX: &str = "soketi_channels::";
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(PREFIX) {
            rest = &rest[at + PREFIX.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path = &rest[..end];
            if path != "Outbox" {
                // A `{…}` list or a module path: name what follows, up to the line's end.
                let shown = if path.is_empty() {
                    rest.trim_end_matches(';')
                } else {
                    path
                };
                found.push((index + 1, shown.to_owned()));
            }
        }
    }
    found
}

/// Line numbers and needles of each forbidden macro call in `text`.
fn forbidden_macros(text: &str) -> Vec<(usize, &'static str)> {
    // Spelled in two halves so that this file does not flag itself if it ever moves.
    let needles = [concat!("dbg", "!("), concat!("todo", "!(")];
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for needle in needles {
            if line.contains(needle) {
                found.push((index + 1, needle));
            }
        }
    }
    found
}

/// Every folder under `crates/` is the package of the same name, and every member inherits the
/// workspace lints and all of its dependencies.
fn check_packages(root: &Path, metadata: &Value) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut names_by_manifest = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let (Some(name), Some(manifest)) =
            (package["name"].as_str(), package["manifest_path"].as_str())
        else {
            bail!("`cargo metadata` gave a package without a name or manifest_path");
        };
        names_by_manifest.insert(PathBuf::from(manifest), name.to_owned());
        let text = read(Path::new(manifest))?;
        let manifest = relative(root, Path::new(manifest));
        if !has_workspace_lints(&text) {
            problems.push(format!("{manifest} lacks `[lints] workspace = true`"));
        }
        for dependency in dependencies_in_place(&text) {
            problems.push(format!(
                "{manifest}: `{dependency}` is not inherited; declare it in the root's \
                 [workspace.dependencies] and write `{dependency}.workspace = true`"
            ));
        }
    }
    for dir in crate_dirs(root)? {
        let folder = dir.file_name().unwrap_or_default().to_string_lossy();
        match names_by_manifest.get(&dir.join("Cargo.toml")) {
            Some(name) if *name == folder => {}
            Some(name) => problems.push(format!(
                "{} holds the package `{name}`; the folder must be named after its package",
                relative(root, &dir)
            )),
            None => problems.push(format!(
                "{} is not a workspace package; every folder under crates/ is one",
                relative(root, &dir)
            )),
        }
    }
    Ok(problems)
}

/// Every package meant for crates.io (without `publish = false`) has what crates.io and docs.rs
/// show: a description, a license, keywords, categories, a README that exists, and crate docs
/// with an example; and it depends only on workspace packages that are published too, or it
/// could not be published.
fn check_publishable(root: &Path, metadata: &Value) -> Result<Vec<String>> {
    let packages: Vec<&Value> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let unpublished: Vec<&str> = packages
        .iter()
        .filter(|package| !is_published(package))
        .filter_map(|package| package["name"].as_str())
        .collect();
    let mut problems = Vec::new();
    for package in packages.into_iter().filter(|package| is_published(package)) {
        let name = package["name"].as_str().unwrap_or_default();
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        let dir = manifest.parent().unwrap_or(root);
        let mut problem = |what: String| {
            problems.push(format!(
                "{}: {what} (or mark it `publish = false`)",
                relative(root, manifest)
            ));
        };
        for field in ["description", "license", "readme"] {
            if package[field].as_str().is_none_or(str::is_empty) {
                problem(format!("{name} is published but has no `{field}`"));
            }
        }
        for field in ["keywords", "categories"] {
            if package[field].as_array().is_none_or(Vec::is_empty) {
                problem(format!("{name} is published but has no `{field}`"));
            }
        }
        if let Some(readme) = package["readme"].as_str().filter(|r| !r.is_empty())
            && !dir.join(readme).is_file()
        {
            problem(format!("{name}'s readme {readme} does not exist"));
        }
        let lib = dir.join("src/lib.rs");
        if lib.is_file() && !has_doc_example(&read(&lib)?) {
            problem(format!("{name}'s crate docs (`//!`) have no example"));
        }
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let dependency_name = dependency["name"].as_str().unwrap_or_default();
            if dependency["kind"] != "dev" && unpublished.contains(&dependency_name) {
                problem(format!(
                    "{name} is published but depends on {dependency_name}, which is not"
                ));
            }
        }
    }
    Ok(problems)
}

/// The workspace packages meant for crates.io, from `cargo metadata`.
pub(crate) fn published_packages(metadata: &Value) -> Vec<String> {
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|package| is_published(package))
        .filter_map(|package| package["name"].as_str().map(str::to_owned))
        .collect()
}

/// `publish = false` is an empty list of registries in `cargo metadata`.
fn is_published(package: &Value) -> bool {
    !package["publish"].as_array().is_some_and(Vec::is_empty)
}

/// Whether crate docs hold a code block: a `//! ```` line.
fn has_doc_example(text: &str) -> bool {
    text.lines().any(|line| {
        line.trim_start()
            .strip_prefix("//!")
            .is_some_and(|rest| rest.trim_start().starts_with("```"))
    })
}

/// Whether a manifest has `[lints] workspace = true` (or its inline or dotted spelling).
fn has_workspace_lints(manifest: &str) -> bool {
    let mut table: Option<String> = None;
    for line in manifest.lines() {
        let line: String = line
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if line.starts_with('[') {
            table = Some(line);
            continue;
        }
        let found = match table.as_deref() {
            None => line == "lints.workspace=true" || line == "lints={workspace=true}",
            Some("[lints]") => line == "workspace=true",
            Some(_) => false,
        };
        if found {
            return true;
        }
    }
    false
}

/// The dependencies of a member's manifest that do not say `workspace = true`, in the order
/// they appear: versions written in place drift apart between crates, so every one is declared
/// once in the root's `[workspace.dependencies]`. Dev-, build- and target-specific dependencies
/// count too.
fn dependencies_in_place(manifest: &str) -> Vec<String> {
    // Each dependency's table and name, and whether one of its lines inherits it: `tokio` may
    // be inherited among the dependencies and written in place among the dev-dependencies.
    let mut found: Vec<(String, String, bool)> = Vec::new();
    let mut header = String::new();
    let mut note = |header: &str, name: &str, inherits: bool| match found
        .iter_mut()
        .find(|(h, n, _)| h == header && n == name)
    {
        Some((_, _, seen)) => *seen |= inherits,
        None => found.push((header.to_owned(), name.to_owned(), inherits)),
    };
    // Inside a dependency table: `None` for `[dependencies]`, the name for `[dependencies.x]`.
    let mut table: Option<Option<String>> = None;
    for line in manifest.lines() {
        let line: String = line
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if let Some(inner) = line.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            header = inner.to_owned();
            table = dependency_table(inner);
            if let Some(Some(name)) = &table {
                note(&header, name, false);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match &table {
            None => {}
            Some(Some(name)) => note(&header, name, key == "workspace" && value == "true"),
            Some(None) => {
                let (name, field) = match key.split_once('.') {
                    Some((name, field)) => (name, Some(field)),
                    None => (key, None),
                };
                let inherits = match field {
                    Some(field) => field == "workspace" && value == "true",
                    None => value.starts_with('{') && value.contains("workspace=true"),
                };
                note(&header, name, inherits);
            }
        }
    }
    found
        .into_iter()
        .filter(|(_, _, inherits)| !inherits)
        .map(|(_, name, _)| name)
        .collect()
}

/// Whether a table header (without its brackets) is a dependency table: `Some(None)` for the
/// table of many, `Some(Some(name))` for one dependency's own table.
fn dependency_table(header: &str) -> Option<Option<String>> {
    let header = match header.strip_prefix("target.") {
        // `target.'cfg(unix)'.dependencies`: what follows the quoted platform; a bare target
        // triple (`target.x86_64-unknown-linux-gnu.dependencies`) holds no dot.
        Some(rest) => match rest.rsplit_once(['\'', '"']) {
            Some((_, tail)) => tail,
            None => rest.split_once('.')?.1,
        },
        None => header,
    };
    let header = header.trim_start_matches('.');
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .into_iter()
        .find_map(|kind| {
            let rest = header.strip_prefix(kind)?;
            match rest.strip_prefix('.') {
                Some(name) => Some(Some(name.to_owned())),
                None => rest.is_empty().then_some(None),
            }
        })
}

/// The folders directly under `crates/`, sorted.
fn crate_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let crates = root.join("crates");
    let mut dirs = Vec::new();
    for entry in fs::read_dir(&crates).with_context(|| format!("listing {}", crates.display()))? {
        let entry = entry.with_context(|| format!("listing {}", crates.display()))?;
        if entry.file_type()?.is_dir() && !is_hidden(&entry.file_name().to_string_lossy()) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The files under `dir` whose names satisfy `wanted`, sorted, leaving out hidden folders,
/// `node_modules` and `target`.
pub(crate) fn files_under(dir: &Path, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                if !is_hidden(&name) && !SKIPPED_DIRS.contains(&name.as_ref()) {
                    pending.push(entry.path());
                }
            } else if file_type.is_file() && wanted(&name) {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
