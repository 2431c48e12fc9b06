use serde_json::json;

use super::{Edges, Layers, check, edges, parse};

/// Parses `page` and renders the result one package a line, or the error.
fn check_parse(page: &str, expected: &str) {
    let actual = match parse(page) {
        Ok(layers) => render(&layers),
        Err(err) => format!("error: {err:#}"),
    };
    assert_eq!(actual.trim_end(), expected.trim(), "page:\n{page}");
}

fn render(layers: &Layers) -> String {
    layers
        .iter()
        .map(|(package, allowed)| {
            let allowed: String = allowed.iter().map(|name| format!(" {name}")).collect();
            format!("{package}:{allowed}\n")
        })
        .collect()
}

#[test]
fn parses_the_block_between_the_markers() {
    check_parse(
        "# Architecture

- `not-in-block`: `ignored`

<!-- xtask:layers -->
- `soketi-server`: `soketi-adapter-core`, `soketi-channels`, `soketi-protocol`
- `soketi-adapter-core`: `soketi-channels`,`soketi-protocol`

  * `soketi-channels` :  `soketi-protocol`
- `soketi-protocol`:
<!-- /xtask:layers -->

- `after`: `ignored`
",
        "
soketi-adapter-core: soketi-channels soketi-protocol
soketi-channels: soketi-protocol
soketi-protocol:
soketi-server: soketi-adapter-core soketi-channels soketi-protocol
",
    );
}

#[test]
fn an_empty_block_lists_nothing() {
    check_parse("<!-- xtask:layers -->\n<!-- /xtask:layers -->\n", "");
}

#[test]
fn missing_markers_say_what_to_add() {
    let expected_tail = "add to docs/ARCHITECTURE.md a block that lists every workspace package \
        and the workspace packages it may depend on, one line each, for example:

<!-- xtask:layers -->
- `soketi-server`: `soketi-adapter-core`, `soketi-channels`, `soketi-protocol`
- `soketi-protocol`:
<!-- /xtask:layers -->";
    let expected = format!(
        "error: the `<!-- xtask:layers -->` … `<!-- /xtask:layers -->` markers are missing; \
         {expected_tail}"
    );
    check_parse("# Architecture\n", &expected);
    check_parse("<!-- xtask:layers -->\n- `a`:\n", &expected);
    check_parse("- `a`:\n<!-- /xtask:layers -->\n", &expected);
}

#[test]
fn rejects_misplaced_or_repeated_markers() {
    check_parse(
        "<!-- /xtask:layers -->\n<!-- xtask:layers -->\n",
        "error: line 1: `<!-- /xtask:layers -->` comes before `<!-- xtask:layers -->` (line 2)",
    );
    check_parse(
        "<!-- xtask:layers -->\n<!-- xtask:layers -->\n<!-- /xtask:layers -->\n",
        "error: line 2: a second `<!-- xtask:layers -->` marker (the first is on line 1)",
    );
}

#[test]
fn rejects_malformed_lines_naming_them() {
    for (line, _why) in [
        ("`a`: `b`", "no bullet"),
        ("- a: `b`", "package not in backticks"),
        ("- `a` `b`", "no colon"),
        ("- `a`: b", "dependency not in backticks"),
        ("- `a`: `b` `c`", "no comma"),
        ("- `a`: `b`,", "trailing comma"),
        ("- `a`: `b`.", "trailing text"),
        ("- ``: `b`", "empty name"),
        ("- `a b`: `c`", "space in a name"),
        ("Some prose.", "prose inside the block"),
    ] {
        check_parse(
            &format!("intro\n<!-- xtask:layers -->\n{line}\n<!-- /xtask:layers -->\n"),
            &format!(
                "error: line 3: expected \"- `package`: `dependency`, `dependency`\" (or nothing \
                 after the colon), found \"{line}\""
            ),
        );
    }
}

#[test]
fn rejects_a_package_listed_twice() {
    check_parse(
        "<!-- xtask:layers -->\n- `a`: `b`\n- `b`:\n- `a`:\n<!-- /xtask:layers -->\n",
        "error: line 4: `a` is already listed on line 2",
    );
}

/// Checks `edges` (package, dependency, kind) against the block `layers` and compares the
/// problems, one a line.
fn check_edges(layers: &str, edges: &[(&str, &[(&str, &str)])], expected: &str) {
    let page = format!("<!-- xtask:layers -->\n{layers}\n<!-- /xtask:layers -->\n");
    let layers = parse(&page).expect("the test's block parses");
    let mut graph = Edges::new();
    for (package, dependencies) in edges {
        let entry = graph.entry(package.to_string()).or_default();
        for (dependency, kind) in *dependencies {
            entry
                .entry(dependency.to_string())
                .or_default()
                .insert(kind.to_string());
        }
    }
    let problems = check(&layers, &graph);
    assert_eq!(problems.join("\n"), expected.trim());
}

const LAYERS: &str = "\
- `soketi-server`: `soketi-adapter-core`, `soketi-channels`, `soketi-protocol`
- `soketi-adapter-core`: `soketi-channels`, `soketi-protocol`
- `soketi-channels`: `soketi-protocol`
- `soketi-protocol`:
- `soketi-future`: `soketi-protocol`";

#[test]
fn allowed_edges_pass() {
    check_edges(
        LAYERS,
        &[
            (
                "soketi-server",
                &[
                    ("soketi-adapter-core", "normal"),
                    ("soketi-protocol", "dev"),
                ],
            ),
            ("soketi-adapter-core", &[("soketi-channels", "normal")]),
            ("soketi-channels", &[("soketi-protocol", "build")]),
            ("soketi-protocol", &[]),
        ],
        "",
    );
}

#[test]
fn reports_each_edge_the_page_does_not_allow() {
    check_edges(
        LAYERS,
        &[
            ("soketi-server", &[("soketi-protocol", "normal")]),
            (
                "soketi-channels",
                &[
                    ("soketi-adapter-core", "dev"),
                    ("soketi-adapter-core", "normal"),
                ],
            ),
            (
                "soketi-protocol",
                &[("soketi-server", "dev"), ("soketi-channels", "build")],
            ),
        ],
        "
`soketi-channels` -> `soketi-adapter-core` (dev, normal) is not allowed by docs/ARCHITECTURE.md
`soketi-protocol` -> `soketi-channels` (build) is not allowed by docs/ARCHITECTURE.md
`soketi-protocol` -> `soketi-server` (dev) is not allowed by docs/ARCHITECTURE.md
",
    );
}

#[test]
fn reports_packages_the_page_does_not_list() {
    check_edges(
        LAYERS,
        &[
            ("soketi-protocol", &[]),
            ("soketi-redis", &[("soketi-adapter-core", "normal")]),
            ("soketi-lonely", &[]),
        ],
        "
`soketi-lonely` is not listed in the layers block of docs/ARCHITECTURE.md
`soketi-redis` is not listed in the layers block of docs/ARCHITECTURE.md
`soketi-redis` -> `soketi-adapter-core` (normal) is not allowed by docs/ARCHITECTURE.md
",
    );
}

#[test]
fn edges_come_from_path_dependencies_between_members() {
    let package = |name: &str, dependencies: serde_json::Value| {
        json!({
            "name": name,
            "id": format!("path+file:///ws/{name}#0.1.0"),
            "dependencies": dependencies,
        })
    };
    let registry = "registry+https://github.com/rust-lang/crates.io-index";
    let metadata = json!({
        "workspace_members": [
            "path+file:///ws/soketi-server#0.1.0",
            "path+file:///ws/soketi-protocol#0.1.0",
            "path+file:///ws/soketi-channels#0.1.0",
            "path+file:///ws/xtask#0.1.0",
        ],
        "packages": [
            package("soketi-server", json!([
                { "name": "soketi-channels", "kind": null, "source": null },
                { "name": "soketi-channels", "kind": "dev", "source": null },
                { "name": "soketi-protocol", "kind": "build", "source": null },
                { "name": "tokio", "kind": null, "source": registry },
            ])),
            package("soketi-protocol", json!([
                { "name": "soketi-channels", "kind": null, "source": registry },
                { "name": "serde", "kind": null, "source": registry },
            ])),
            package("soketi-channels", json!([])),
            package("xtask", json!([
                { "name": "soketi-protocol", "kind": null, "source": null },
            ])),
        ],
    });
    let edges = edges(&metadata, "xtask").expect("metadata parses");
    let rendered: Vec<String> = edges
        .iter()
        .map(|(package, dependencies)| {
            let dependencies: Vec<String> = dependencies
                .iter()
                .map(|(name, kinds)| {
                    let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
                    format!("{name} ({})", kinds.join(", "))
                })
                .collect();
            format!("{package}: {}", dependencies.join(", "))
        })
        .collect();
    assert_eq!(
        rendered.join("\n"),
        "soketi-channels: \n\
         soketi-protocol: \n\
         soketi-server: soketi-channels (dev, normal), soketi-protocol (build)"
    );
}
