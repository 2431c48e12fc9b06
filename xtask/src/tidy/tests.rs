use super::{
    channels_items_used, dependencies_in_place, forbidden_macros, has_doc_example,
    has_workspace_lints, opens_with_inner_doc,
};

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
fn server_names_only_outbox_of_channels() {
    let text = concat!(
        "use soketi_channels::Outbox;\n",
        "use soketi_channels::{AppChannels, Outbox};\n",
        "fn f(r: &soketi_channels::Registry) {}\n",
        "impl soketi_channels::Outbox for C {}\n",
        "use soketi_channels;\n",
    );
    assert_eq!(
        channels_items_used(text),
        [
            (2, "{AppChannels, Outbox}".to_owned()),
            (3, "Registry".to_owned()),
        ]
    );
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

#[test]
fn dependencies_written_in_place() {
    let check = |manifest: &str, expected: &[&str]| {
        assert_eq!(
            dependencies_in_place(manifest),
            expected,
            "manifest:\n{manifest}"
        );
    };
    check(
        concat!(
            "[package]\nname = \"a\"\nversion.workspace = true\n\n",
            "[dependencies]\nbytes.workspace = true\n",
            "serde_json = { workspace = true, features = [\"raw_value\"] }\n",
            "tokio.workspace = true\ntokio.features = [\"net\"]\n\n",
            "[build-dependencies]\nprost-build.workspace = true # inherited\n",
        ),
        &[],
    );
    check(
        "[dependencies]\nform_urlencoded = \"1\"\nhex.workspace = true\n",
        &["form_urlencoded"],
    );
    check(
        "[dev-dependencies]\ntempfile = { version = \"3\" }\n[dependencies]\nlocal = { path = \"../x\" }\n",
        &["tempfile", "local"],
    );
    check(
        "[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n[target.\"cfg(windows)\".build-dependencies]\ncc.workspace = true\n",
        &["libc"],
    );
    check(
        "[target.x86_64-unknown-linux-gnu.dev-dependencies]\nrustix = \"1\"\n",
        &["rustix"],
    );
    check(
        "[dependencies.redis]\nversion = \"1\"\n\n[dependencies.tar]\nworkspace = true\n",
        &["redis"],
    );
    check(
        "[dependencies]\ntokio.workspace = true\n[dev-dependencies]\ntokio = \"1\"\n",
        &["tokio"],
    );
    // Keys outside dependency tables are not dependencies.
    check(
        "[package]\nname = \"a\"\n[features]\nfull = [\"tokio\"]\n[lints]\nworkspace = true\n",
        &[],
    );
}
