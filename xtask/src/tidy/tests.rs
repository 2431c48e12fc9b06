use super::{forbidden_macros, has_doc_example, has_workspace_lints, opens_with_inner_doc};

#[test]
fn lib_docs() {
    let check = |text: &str, expected: bool| {
        assert_eq!(opens_with_inner_doc(text), expected, "text: {text:?}");
    };
    check("//! The protocol.\n\npub mod message;\n", true);
    check(
        "\u{feff}\n//! After a byte order mark and a blank line.\n",
        true,
    );
    check("/// An outer doc comment.\npub struct S;\n", false);
    check("// A plain comment.\n//! Then docs.\n", false);
    check(
        "#![forbid(unsafe_code)]\n//! Docs after an attribute.\n",
        false,
    );
    check("", false);
}

#[test]
fn forbidden_macro_lines() {
    let text = concat!(
        "fn f() {\n",
        "    let x = dbg",
        "!(1);\n",
        "    // todo",
        "!(later), even in a comment\n",
        "    let y = debug!(\"not dbg\");\n",
        "    dbg",
        "!(todo",
        "!());\n",
        "}\n",
    );
    assert_eq!(
        forbidden_macros(text),
        [
            (2, concat!("dbg", "!(")),
            (3, concat!("todo", "!(")),
            (5, concat!("dbg", "!(")),
            (5, concat!("todo", "!(")),
        ]
    );
}

#[test]
fn workspace_lints() {
    let check = |manifest: &str, expected: bool| {
        assert_eq!(
            has_workspace_lints(manifest),
            expected,
            "manifest:\n{manifest}"
        );
    };
    check(
        "[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n",
        true,
    );
    check(
        "[package]\nname = \"a\"\n\n[lints]  # inherit\nworkspace=true # yes\n",
        true,
    );
    check("lints.workspace = true\n[package]\nname = \"a\"\n", true);
    check("lints = { workspace = true }\n[package]\n", true);
    check("[package]\nname = \"a\"\n", false);
    check("[lints]\nworkspace = false\n", false);
    check("[lints]\n[dependencies]\nworkspace = true\n", false);
    check("[lints.rust]\nworkspace = true\n", false);
    check("[package]\nlints.workspace = true\n", false);
}

#[test]
fn doc_examples() {
    let check = |text: &str, expected: bool| {
        assert_eq!(has_doc_example(text), expected, "text: {text:?}");
    };
    check(
        "//! The protocol.\n//!\n//! ```\n//! let x = 1;\n//! ```\n",
        true,
    );
    check("//! Text.\n//!     ```rust\n", true);
    check("//! No example.\n", false);
    check("/// ```\n/// an item's example\n/// ```\n", false);
    check("// ```\n", false);
}
