//! The files under `deploy/` against the binary they deploy, without a container engine or a
//! Kubernetes cluster: every environment name is one the configuration accepts, the manifests'
//! settings load and can run, their ports, probes, grace periods and scrape annotations are the
//! ones the server has, the cluster shape finds its peers by unicast through a headless Service,
//! the Dockerfile builds the dist profile with the pinned toolchain into the root filesystem of
//! `cargo xtask image`, the manifests and the Dockerfile name the image as that task tags it and
//! run it as its user, and the systemd unit passes `systemd-analyze verify`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use soketi_adapter_cluster::Mode;
use soketi_server::Config;
use soketi_server::config::ENV_OPTIONS;

/// Variables of the build, not of the configuration: `build.rs` reads them to name the commit.
const BUILD_VARIABLES: [&str; 2] = ["SOKETI_BUILD_COMMIT", "SOKETI_BUILD_DATE"];

/// What a pod's `fieldRef` stands for when the test loads a manifest's configuration.
const FIELD_VALUES: [(&str, &str); 2] = [("status.podIP", "10.0.0.7"), ("metadata.name", "pod")];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every file under `deploy/`, sorted.
fn deploy_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root().join("deploy")];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "deploy/ holds no file");
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Whether the configuration reads `name` from the environment.
fn accepted(name: &str) -> bool {
    ENV_OPTIONS.iter().any(|option| {
        name.strip_prefix("SOKETI_") == Some(option.name)
            || (!option.prefix_only && name == option.name)
    })
}

/// Every `SOKETI_NAME` written in `text`, comments included.
fn prefixed_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("SOKETI_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.len() > "SOKETI_".len() {
            names.push(name.trim_end_matches('_').to_owned());
        }
        rest = &rest[at + "SOKETI_".len()..];
    }
    names
}

/// The YAML documents of a file, as JSON values.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            let yaml = serde_yaml::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", relative(path)));
            serde_json::to_value(yaml).unwrap()
        })
        .filter(|document| !document.is_null())
        .collect()
}

fn yaml_files() -> Vec<PathBuf> {
    let files: Vec<PathBuf> = deploy_files()
        .into_iter()
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml")
        })
        .collect();
    assert!(!files.is_empty(), "deploy/ holds no manifest");
    files
}

/// The keys of `KEY=value` settings on lines that start with `prefix` (`ENV `, `Environment=`).
fn assignments(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(prefix))
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|word| word.trim_matches('"').split_once('='))
        .map(|(key, _)| key.to_owned())
        .collect()
}

#[test]
fn deploy_names_only_options_the_configuration_accepts() {
    assert!(
        BUILD_VARIABLES
            .iter()
            .all(|name| read(&root().join("crates/soketi-server/build.rs")).contains(name)),
        "build.rs no longer reads one of {BUILD_VARIABLES:?}"
    );
    let mut unknown = Vec::new();
    let mut check = |path: &Path, name: &str| {
        if !accepted(name) && !BUILD_VARIABLES.contains(&name) {
            unknown.push(format!("{}: {name}", relative(path)));
        }
    };
    for path in deploy_files() {
        let text = read(&path);
        for name in prefixed_names(&text) {
            check(&path, &name);
        }
        // Names without the prefix count where they are set: manifests' `env`, the
        // Dockerfile's `ENV` and the unit's `Environment=`.
        for key in assignments(&text, "ENV ")
            .into_iter()
            .chain(assignments(&text, "Environment="))
        {
            check(&path, &key);
        }
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            for document in documents(&path) {
                for container in containers(&document) {
                    for variable in container["env"].as_array().into_iter().flatten() {
                        check(&path, variable["name"].as_str().unwrap_or_default());
                    }
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "names the configuration does not accept (see docs/configuration.md):\n  {}",
        unknown.join("\n  ")
    );
}

/// The containers of a workload's pod template.
fn containers(document: &Value) -> Vec<&Value> {
    document["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect()
}

/// A pod template's containers that run our image.
fn soketi_containers(document: &Value) -> Vec<&Value> {
    containers(document)
        .into_iter()
        .filter(|container| {
            container["image"].as_str().is_some_and(|image| {
                image.starts_with("soketi-server") || image.contains("/soketi-server")
            })
        })
        .collect()
}

/// A container's environment as the pod would see it: values, Secrets' and ConfigMaps'
/// entries from the same file, and the downward API's fields from `FIELD_VALUES`.
fn environment(container: &Value, documents: &[Value]) -> BTreeMap<String, String> {
    let find = |kind: &str, name: &Value| {
        documents
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == *name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the same file"))
    };
    let mut env = BTreeMap::new();
    for variable in container["env"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().expect("env entries have a name");
        let from = &variable["valueFrom"];
        let value = if let Some(value) = variable.get("value") {
            value
                .as_str()
                .unwrap_or_else(|| panic!("{name}: Kubernetes takes only strings, not {value}"))
                .to_owned()
        } else if let Some(reference) = from.get("secretKeyRef") {
            let secret = find("Secret", &reference["name"]);
            secret["stringData"][reference["key"].as_str().unwrap()]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no such key in the Secret's stringData"))
                .to_owned()
        } else if let Some(reference) = from.get("configMapKeyRef") {
            let map = find("ConfigMap", &reference["name"]);
            map["data"][reference["key"].as_str().unwrap()]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no such key in the ConfigMap"))
                .to_owned()
        } else if let Some(field) = from["fieldRef"]["fieldPath"].as_str() {
            FIELD_VALUES
                .iter()
                .find(|(path, _)| *path == field)
                .unwrap_or_else(|| panic!("{name}: add {field} to FIELD_VALUES"))
                .1
                .to_owned()
        } else {
            panic!("{name}: a value form this test does not know: {variable}");
        };
        env.insert(name.to_owned(), value);
    }
    env
}

/// The container port that a probe or Service names, by number or by name.
fn port_number(container: &Value, port: &Value) -> Option<u64> {
    match port {
        Value::Number(number) => number.as_u64(),
        Value::String(name) => container["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == *name.as_str())
            .and_then(|p| p["containerPort"].as_u64()),
        _ => None,
    }
}

/// The container's ports as (number, protocol).
fn container_ports(container: &Value) -> BTreeSet<(u64, String)> {
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["containerPort"].as_u64().unwrap_or_default(),
                p["protocol"].as_str().unwrap_or("TCP").to_owned(),
            )
        })
        .collect()
}

/// Whether a Service's selector picks the pods of `template`.
fn selects(service: &Value, template: &Value) -> bool {
    let labels = &template["metadata"]["labels"];
    service["spec"]["selector"]
        .as_object()
        .is_some_and(|selector| {
            !selector.is_empty() && selector.iter().all(|(k, v)| labels[k] == *v)
        })
}

#[test]
fn manifests_serve_the_binarys_ports_probes_and_peers() {
    let mut shapes = BTreeSet::new();
    for path in yaml_files() {
        let file = relative(&path);
        let documents = documents(&path);
        for document in &documents {
            for key in ["apiVersion", "kind"] {
                assert!(
                    document[key].is_string(),
                    "{file}: a document without {key}"
                );
            }
        }
        let workloads: Vec<&Value> = documents
            .iter()
            .filter(|d| !soketi_containers(d).is_empty())
            .collect();
        for workload in workloads {
            let template = &workload["spec"]["template"];
            let [container] = soketi_containers(workload)[..] else {
                panic!("{file}: one soketi-server container per pod");
            };
            let env = environment(container, &documents);
            let config = Config::load_from(None, |name| env.get(name).cloned())
                .unwrap_or_else(|e| panic!("{file}: the configuration does not load: {e}"));
            config
                .check_runnable()
                .unwrap_or_else(|e| panic!("{file}: the server would refuse to start: {e}"));

            let ports = container_ports(container);
            for port in [config.port, config.metrics.port] {
                assert!(
                    ports.contains(&(u64::from(port), "TCP".to_owned())),
                    "{file}: no container port {port}/TCP in {ports:?}"
                );
            }
            let probe = |kind: &str, path: &str| {
                let get = &container[kind]["httpGet"];
                assert_eq!(get["path"], path, "{file}: {kind} path");
                assert_eq!(
                    port_number(container, &get["port"]),
                    Some(u64::from(config.metrics.port)),
                    "{file}: {kind} asks the operations port"
                );
            };
            probe("readinessProbe", "/ready");
            probe("livenessProbe", "/");

            let termination = template["spec"]["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(30);
            assert!(
                termination * 1000 > config.shutdown_grace_period,
                "{file}: terminationGracePeriodSeconds ({termination} s) must exceed the \
                 shutdown grace period ({} ms)",
                config.shutdown_grace_period
            );

            let annotations = &template["metadata"]["annotations"];
            assert_eq!(annotations["prometheus.io/scrape"], "true", "{file}");
            assert_eq!(
                annotations["prometheus.io/port"],
                config.metrics.port.to_string(),
                "{file}"
            );
            assert_eq!(annotations["prometheus.io/path"], "/metrics", "{file}");
            assert!(
                config.metrics.enabled,
                "{file}: scraped, but /metrics is off"
            );

            // Every Service of these pods forwards to ports the container has.
            let services: Vec<&Value> = documents
                .iter()
                .filter(|d| d["kind"] == "Service" && selects(d, template))
                .collect();
            assert!(!services.is_empty(), "{file}: no Service selects the pods");
            for service in &services {
                for port in service["spec"]["ports"].as_array().into_iter().flatten() {
                    let target = port.get("targetPort").unwrap_or(&port["port"]);
                    let number = port_number(container, target)
                        .unwrap_or_else(|| panic!("{file}: Service port {port} targets nothing"));
                    let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
                    assert!(
                        ports.contains(&(number, protocol)),
                        "{file}: Service port {port} is not a container port"
                    );
                }
            }

            let driver = config.adapter.driver.as_str();
            if driver == "cluster" {
                check_cluster_peers(&file, &config, container, template, &services);
            }
            let replicas = workload["spec"]["replicas"].as_u64().unwrap_or(1);
            assert!(
                (driver == "local") == (replicas == 1),
                "{file}: {replicas} replicas with the {driver} adapter"
            );
            shapes.insert(driver.to_owned());
        }
    }
    let expected: BTreeSet<String> = ["local", "redis", "cluster"].map(str::to_owned).into();
    assert_eq!(
        shapes, expected,
        "one replica, a Redis fleet and a cluster fleet"
    );
}

/// The cluster shape must work without broadcast or multicast: unicast to names of headless
/// Services that list the pods before they are ready, on the discovery port.
fn check_cluster_peers(
    file: &str,
    config: &Config,
    container: &Value,
    template: &Value,
    services: &[&Value],
) {
    let Ok(Mode::Unicast(entries)) = config.cluster_mode() else {
        panic!("{file}: the cluster adapter must use unicast (CLUSTER_UNICAST_ADDRESSES)");
    };
    assert!(
        container_ports(container).contains(&(u64::from(config.cluster.port), "UDP".to_owned())),
        "{file}: no container port {}/UDP for discovery",
        config.cluster.port
    );
    for entry in entries {
        let (host, port) = match entry.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().expect("a port number")),
            None => (entry.as_str(), config.cluster.port),
        };
        // `name` or `name.namespace...`: the Service's own name comes first.
        let name = host.split('.').next().unwrap_or_default();
        let service = services
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{file}: {host} names no Service of the pods"));
        let spec = &service["spec"];
        assert_eq!(spec["clusterIP"], "None", "{file}: {name} must be headless");
        assert_eq!(
            spec["publishNotReadyAddresses"], true,
            "{file}: {name} must list pods before they are ready"
        );
        assert!(
            selects(service, template),
            "{file}: {name} must select the pods"
        );
        assert!(
            spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["port"] == port && p["protocol"] == "UDP"),
            "{file}: {name} has no {port}/UDP port"
        );
    }
}

/// A Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn dockerfile_builds_the_dist_profile_and_serves_the_ports() {
    let root = root();
    let dockerfile = instructions(&read(&root.join("deploy/Dockerfile")));
    let all = |keyword: &str| -> Vec<&str> {
        dockerfile
            .iter()
            .filter_map(|line| line.strip_prefix(keyword))
            .map(str::trim)
            .collect()
    };

    // The builder's toolchain is the one rust-toolchain.toml pins.
    let toolchain = read(&root.join("rust-toolchain.toml"));
    let channel = toolchain
        .lines()
        .find_map(|line| line.trim().strip_prefix("channel"))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("rust-toolchain.toml names a channel");
    let stages = all("FROM ");
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");
    assert!(
        stages[0].starts_with(&format!("rust:{channel}-")),
        "the builder {} is not rust:{channel}",
        stages[0]
    );

    // It builds with Cargo.lock's versions and ships the root filesystem that `cargo xtask
    // image` puts in its own image, around the binary of the dist profile, which Cargo.toml
    // declares (xtask's tests check that profile, and compare the rest of the Dockerfile with
    // that image's config).
    assert!(read(&root.join("Cargo.toml")).contains("[profile.dist]"));
    let runs = all("RUN ").join("\n");
    assert!(runs.contains("cargo fetch --locked"), "{runs}");
    assert!(
        runs.contains("cargo xtask image --rootfs /rootfs"),
        "{runs}"
    );
    assert!(
        !runs.contains("--profile"),
        "`cargo xtask image` builds the dist profile itself: {runs}"
    );
    assert_eq!(
        stages.last(),
        Some(&"scratch"),
        "the runtime stage starts empty"
    );
    assert!(
        all("COPY ").contains(&"--from=build /rootfs/ /"),
        "the runtime stage is the root filesystem of `cargo xtask image --rootfs`"
    );

    for copy in all("COPY ") {
        if copy.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = copy.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(root.join(source).exists(), "COPY {source}: no such path");
        }
    }
    let ignored = read(&root.join(".dockerignore"));
    for entry in ["target", ".git", "**/node_modules"] {
        assert!(
            ignored.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }

    let defaults = Config::default();
    let exposed: Vec<&str> = all("EXPOSE ")
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    for port in [defaults.port, defaults.metrics.port] {
        assert!(
            exposed.contains(&port.to_string().as_str()),
            "EXPOSE lacks {port}"
        );
    }

    let user = all("USER ");
    let user = user.last().expect("the runtime image sets USER");
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        !["root", "0", ""].contains(&name),
        "the image runs as {user}"
    );

    let health = all("HEALTHCHECK ");
    let [health] = health[..] else {
        panic!("one HEALTHCHECK: {health:?}");
    };
    assert!(
        health.contains(r#"CMD ["/usr/local/bin/soketi-server", "health"]"#),
        "{health}"
    );
    assert_eq!(
        all("ENTRYPOINT "),
        [r#"["/usr/local/bin/soketi-server"]"#],
        "the binary where `cargo xtask image --rootfs` puts it"
    );
}

/// The image's name, as `cargo xtask image` tags it: `REPOSITORY` of xtask/src/image.rs and the
/// package's version.
fn image_name() -> String {
    let source = read(&root().join("xtask/src/image.rs"));
    let repository = source
        .lines()
        .find_map(|line| line.strip_prefix("pub(crate) const REPOSITORY: &str = "))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("xtask/src/image.rs declares `pub(crate) const REPOSITORY: &str = \"...\";`");
    format!("{repository}:{}", env!("CARGO_PKG_VERSION"))
}

/// The `LABEL key="value"` pairs of a Dockerfile's instructions.
fn labels(instructions: &[String]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for line in instructions {
        let Some(mut rest) = line.strip_prefix("LABEL ") else {
            continue;
        };
        while let Some((key, after)) = rest.trim_start().split_once("=\"") {
            let (value, next) = after.split_once('"').expect("a closing quote");
            labels.insert(key.trim().to_owned(), value.to_owned());
            rest = next;
        }
    }
    labels
}

#[test]
fn manifests_and_dockerfile_name_the_image_that_xtask_builds() {
    let name = image_name();
    let dockerfile_text = read(&root().join("deploy/Dockerfile"));
    let dockerfile = instructions(&dockerfile_text);
    assert!(
        dockerfile_text.contains(&format!("docker build -f deploy/Dockerfile -t {name} ")),
        "deploy/Dockerfile's build command tags another name than {name}"
    );
    let labels = labels(&dockerfile);
    for (key, expected) in [
        ("version", env!("CARGO_PKG_VERSION")),
        ("licenses", env!("CARGO_PKG_LICENSE")),
        ("source", env!("CARGO_PKG_REPOSITORY")),
    ] {
        let key = format!("org.opencontainers.image.{key}");
        assert_eq!(
            labels.get(&key).map(String::as_str),
            Some(expected),
            "{key}"
        );
    }
    let user = dockerfile
        .iter()
        .filter_map(|line| line.strip_prefix("USER "))
        .next_back()
        .expect("USER");
    let (uid, gid) = user.trim().split_once(':').expect("USER uid:gid");

    for path in yaml_files() {
        let file = relative(&path);
        for document in documents(&path) {
            for container in soketi_containers(&document) {
                assert_eq!(container["image"], name.as_str(), "{file}: the image");
            }
            if soketi_containers(&document).is_empty() {
                continue;
            }
            // The image's own user, so that runAsNonRoot holds and files stay readable.
            let context = &document["spec"]["template"]["spec"]["securityContext"];
            assert_eq!(context["runAsUser"].to_string(), uid, "{file}: runAsUser");
            assert_eq!(context["runAsGroup"].to_string(), gid, "{file}: runAsGroup");
        }
    }
}

#[test]
fn systemd_unit_verifies() {
    let unit = read(&root().join("deploy/soketi-server.service"));
    let stop = unit
        .lines()
        .find_map(|line| line.strip_prefix("TimeoutStopSec="))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .expect("TimeoutStopSec= in seconds");
    let grace = Config::default().shutdown_grace_period;
    assert!(
        stop * 1000 > grace,
        "TimeoutStopSec={stop} must exceed the shutdown grace period ({grace} ms)"
    );

    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        // .ci/run installs systemd when absent, so the README's test command never skips.
        assert!(
            std::env::var_os("SOKETI_TEST_REQUIRE_ALL").is_none(),
            "systemd-analyze is required under SOKETI_TEST_REQUIRE_ALL (Debian package systemd)"
        );
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success(), "{version:?}");

    // `verify` needs the binary of ExecStart to exist: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("soketi-server.service");
    let binary = env!("CARGO_BIN_EXE_soketi-server");
    assert!(unit.contains("ExecStart=/usr/local/bin/soketi-server "));
    fs::write(&path, unit.replace("/usr/local/bin/soketi-server", binary)).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    // Unknown keys and bad values are only warnings, with success: any output fails the test.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify ({}):\n{stdout}{stderr}",
        output.status
    );
}

#[test]
fn names_in_text() {
    let check = |text: &str, expected: &[&str]| {
        assert_eq!(prefixed_names(text), expected, "{text:?}");
    };
    check(
        "SOKETI_PORT=6001 and SOKETI_METRICS_SERVER_PORT",
        &["SOKETI_PORT", "SOKETI_METRICS_SERVER_PORT"],
    );
    check("(SOKETI_* variables", &[]);
    check("`SOKETI_DEFAULT_APP_`", &["SOKETI_DEFAULT_APP"]);
    check("no names", &[]);
    assert!(accepted("SOKETI_PORT"));
    assert!(!accepted("PORT"), "generic names need the prefix");
    assert!(accepted("ADAPTER_DRIVER"));
    assert!(!accepted("SOKETI_NO_SUCH_OPTION"));
}
