//! The allowed dependency edges between workspace packages: read from `docs/ARCHITECTURE.md`,
//! checked against `cargo metadata`. Pure functions, so the tests need no files or processes.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The page that holds the block, relative to the workspace root.
pub(crate) const PAGE: &str = "docs/ARCHITECTURE.md";
const START: &str = "<!-- xtask:layers -->";
const END: &str = "<!-- /xtask:layers -->";

/// For each package the page lists, the workspace packages it may depend on.
pub(crate) type Layers = BTreeMap<String, BTreeSet<String>>;

/// For each workspace package, its dependencies on workspace packages, each with the kinds
/// (`normal`, `dev`, `build`) it is declared under.
pub(crate) type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// What to add when the block is missing.
pub(crate) fn how_to_add() -> String {
    format!(
        "add to {PAGE} a block that lists every workspace package and the workspace packages it \
         may depend on, one line each, for example:\n\n{START}\n\
         - `soketi-server`: `soketi-adapter-core`, `soketi-channels`, `soketi-protocol`\n\
         - `soketi-protocol`:\n{END}"
    )
}

/// Parses the block between the markers of `page`. Errors name lines of the whole page.
pub(crate) fn parse(page: &str) -> Result<Layers> {
    let lines: Vec<&str> = page.lines().collect();
    let start = marker(&lines, START)?;
    let end = marker(&lines, END)?;
    let (Some(start), Some(end)) = (start, end) else {
        bail!(
            "the `{START}` … `{END}` markers are missing; {}",
            how_to_add()
        );
    };
    if end < start {
        bail!(
            "line {}: `{END}` comes before `{START}` (line {})",
            end + 1,
            start + 1
        );
    }
    let mut layers = Layers::new();
    let mut listed_on = BTreeMap::new();
    for (index, line) in lines.iter().enumerate().take(end).skip(start + 1) {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (package, allowed) = parse_line(line).with_context(|| {
            format!(
                "line {number}: expected \"- `package`: `dependency`, `dependency`\" (or nothing \
                 after the colon), found \"{line}\""
            )
        })?;
        if let Some(first) = listed_on.insert(package.clone(), number) {
            bail!("line {number}: `{package}` is already listed on line {first}");
        }
        layers.insert(package, allowed);
    }
    Ok(layers)
}

/// The index of the line that is exactly `marker`, if one is; an error if several are.
fn marker(lines: &[&str], marker: &str) -> Result<Option<usize>> {
    let mut found = (1..)
        .zip(lines)
        .filter(|(_, line)| line.trim() == marker)
        .map(|(number, _)| number);
    match (found.next(), found.next()) {
        (Some(first), Some(second)) => {
            bail!("line {second}: a second `{marker}` marker (the first is on line {first})")
        }
        (first, _) => Ok(first.map(|number| number - 1)),
    }
}

/// ``- `package`: `a`, `b` `` into the package and the set of its allowed dependencies.
fn parse_line(line: &str) -> Option<(String, BTreeSet<String>)> {
    let rest = line
        .strip_prefix("- ")
        .or_else(|| line.strip_prefix("* "))?;
    let (package, rest) = code(rest.trim_start())?;
    let rest = rest.trim_start().strip_prefix(':')?.trim();
    let mut allowed = BTreeSet::new();
    if !rest.is_empty() {
        for item in rest.split(',') {
            let (dependency, after) = code(item.trim())?;
            if !after.is_empty() {
                return None;
            }
            allowed.insert(dependency.to_owned());
        }
    }
    Some((package.to_owned(), allowed))
}

/// A leading `` `name` `` into the name and what follows it.
fn code(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix('`')?;
    let (name, after) = rest.split_once('`')?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    valid.then_some((name, after))
}

/// The edges between workspace packages in `cargo metadata --no-deps` output, of every package but
/// `skip`, and of every dependency kind.
pub(crate) fn edges(metadata: &Value, skip: &str) -> Result<Edges> {
    let packages = metadata["packages"]
        .as_array()
        .context("`cargo metadata` output has no packages")?;
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("`cargo metadata` output has no workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let workspace: Vec<&Value> = packages
        .iter()
        .filter(|package| {
            package["id"]
                .as_str()
                .is_some_and(|id| members.contains(id))
        })
        .collect();
    let names: BTreeSet<&str> = workspace
        .iter()
        .filter_map(|package| package["name"].as_str())
        .collect();
    let mut edges = Edges::new();
    for package in workspace {
        let name = package["name"]
            .as_str()
            .context("a package without a name")?;
        if name == skip {
            continue;
        }
        let dependencies = edges.entry(name.to_owned()).or_default();
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let Some(dependency_name) = dependency["name"].as_str() else {
                continue;
            };
            // A workspace package is always a path dependency; a registry package that happens to
            // share a name is not an edge.
            let local = dependency["source"].is_null();
            if local && names.contains(dependency_name) {
                let kind = dependency["kind"].as_str().unwrap_or("normal");
                dependencies
                    .entry(dependency_name.to_owned())
                    .or_default()
                    .insert(kind.to_owned());
            }
        }
    }
    Ok(edges)
}

/// Every package the page does not list and every edge it does not allow, one message each.
pub(crate) fn check(layers: &Layers, edges: &Edges) -> Vec<String> {
    let mut problems = Vec::new();
    for (package, dependencies) in edges {
        let allowed = layers.get(package);
        if allowed.is_none() {
            problems.push(format!(
                "`{package}` is not listed in the layers block of {PAGE}"
            ));
        }
        for (dependency, kinds) in dependencies {
            if !allowed.is_some_and(|allowed| allowed.contains(dependency)) {
                let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
                problems.push(format!(
                    "`{package}` -> `{dependency}` ({}) is not allowed by {PAGE}",
                    kinds.join(", ")
                ));
            }
        }
    }
    problems
}
