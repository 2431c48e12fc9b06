//! Loading: the defaults, a config file and the environment, each a figment provider named
//! after its source, so that a bad value is reported with where it came from.

use std::path::Path;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::env::{self, ENV_OPTIONS};
use super::{Config, ConfigError, InvalidValue, SyntaxError, apps};

/// A figment provider holding one source's settings, named after the source.
struct Source {
    name: String,
    values: serde_json::Value,
}

impl Provider for Source {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = Value::serialize(&self.values)?
            .into_dict()
            .ok_or_else(|| figment::Error::from(format!("{} is not a map", self.name)))?;
        Ok(Profile::Default.collect(dict))
    }
}

impl Config {
    /// Loads the configuration from the defaults, `file` and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// Loads the configuration with `lookup` in place of the process environment.
    pub fn load_from(
        file: Option<&Path>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // Apps are merged by index, so that `DEFAULT_APP_KEY` changes the first app of a
        // config file instead of replacing the list; the defaults hold no app, and the default
        // app fills the gaps of the first one afterwards.
        let mut defaults =
            serde_json::to_value(Config::default()).map_err(ConfigError::Defaults)?;
        let mut unknown = Vec::new();
        apps::index_apps(&mut defaults, true);
        let mut figment = Figment::from(Source {
            name: "the defaults".into(),
            values: defaults.clone(),
        });
        if let Some(path) = file {
            let mut values = read_file(path)?;
            unknown_keys(&values, &defaults, "", &mut unknown);
            apps::index_apps(&mut values, false);
            figment = figment.merge(Source {
                name: format!("config file {}", path.display()),
                values,
            });
        }
        for prefixed in [false, true] {
            for option in ENV_OPTIONS {
                if !prefixed && option.prefix_only {
                    continue;
                }
                let name = if prefixed {
                    format!("SOKETI_{}", option.name)
                } else {
                    option.name.to_owned()
                };
                if let Some(raw) = lookup(&name) {
                    figment = figment.merge(Source {
                        name: format!("environment variable {name}"),
                        values: env::nest(option.path, env::parse_value(&raw)),
                    });
                }
            }
        }
        let mut config: Config = figment.extract().map_err(describe)?;
        config.unknown_file_keys = unknown;
        apps::fill_default_app(&mut config.app_manager.array.apps);
        config.validate()?;
        Ok(config)
    }
}

/// Adds to `out` the dotted paths of `file`'s keys under `path` that name no option: neither a
/// field of the configuration (`defaults`, its serialized defaults) nor an option of soketi's
/// list (`ENV_OPTIONS`, which holds the fields whose default is left out). Values whose
/// default is not a map of fields (lists, free-form objects such as client options, the apps)
/// are not looked into.
fn unknown_keys(
    file: &serde_json::Value,
    defaults: &serde_json::Value,
    path: &str,
    out: &mut Vec<String>,
) {
    let serde_json::Value::Object(map) = file else {
        return;
    };
    for (key, value) in map {
        let dotted = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if dotted == "appManager.array.apps" {
            unknown_app_keys(value, &dotted, out);
            continue;
        }
        match defaults.get(key) {
            Some(fields @ serde_json::Value::Object(known)) if !known.is_empty() => {
                unknown_keys(value, fields, &dotted, out);
            }
            Some(_) => {}
            None => {
                let listed = ENV_OPTIONS.iter().any(|option| {
                    option.path == dotted
                        || option
                            .path
                            .strip_prefix(dotted.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                });
                if !listed {
                    out.push(dotted);
                }
            }
        }
    }
}

/// Adds to `out` the keys of the apps listed at `path` (a list, or a map from index to app)
/// that no spelling of an app field matches, as `path.<index>.<key>`.
fn unknown_app_keys(apps: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    let apps: Vec<(String, &serde_json::Value)> = match apps {
        serde_json::Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, app)| (i.to_string(), app))
            .collect(),
        serde_json::Value::Object(map) => map.iter().map(|(i, app)| (i.clone(), app)).collect(),
        _ => return,
    };
    for (index, app) in apps {
        // A value that is not an app is reported when the configuration is read.
        let _ = serde_ignored::deserialize(app, |key| {
            out.push(format!("{path}.{index}.{key}"));
        })
        .map(|_: apps::AppConfig| ());
    }
}

/// Reads a config file by extension and expands soketi's dotted keys into nested maps.
fn read_file(path: &Path) -> Result<serde_json::Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let parsed: Result<serde_json::Value, SyntaxError> = match extension.as_str() {
        "json" => serde_json::from_str(&text).map_err(SyntaxError::from),
        "toml" => toml_to_json(&text),
        "yaml" | "yml" => yaml_to_json(&text),
        other => {
            return Err(ConfigError::FileFormat {
                path: path.to_owned(),
                extension: other.to_owned(),
            });
        }
    };
    let parsed = parsed.map_err(|source| ConfigError::FileSyntax {
        path: path.to_owned(),
        source,
    })?;
    let serde_json::Value::Object(map) = parsed else {
        return Err(ConfigError::FileNotMap {
            path: path.to_owned(),
        });
    };
    let mut out = serde_json::Value::Object(serde_json::Map::new());
    for (key, value) in map {
        env::merge_into(&mut out, &env::nest(&key, value));
    }
    Ok(out)
}

fn toml_to_json(text: &str) -> Result<serde_json::Value, SyntaxError> {
    use figment::providers::{Format, Toml};
    let dict = Toml::from_str::<Dict>(text).map_err(SyntaxError::Toml)?;
    Ok(serde_json::to_value(&dict)?)
}

fn yaml_to_json(text: &str) -> Result<serde_json::Value, SyntaxError> {
    use figment::providers::{Format, Yaml};
    let dict = Yaml::from_str::<Dict>(text).map_err(SyntaxError::Yaml)?;
    Ok(serde_json::to_value(&dict)?)
}

/// Every bad value: the option, where it came from, and what was wrong with it.
fn describe(errors: figment::Error) -> ConfigError {
    let values = errors
        .into_iter()
        .map(|e| {
            let option = e.path.join(".");
            InvalidValue {
                environment: env::env_names_for(&option),
                origin: e
                    .metadata
                    .as_ref()
                    .map_or_else(|| "the defaults".to_owned(), |m| m.name.to_string()),
                option,
                kind: e.kind,
            }
        })
        .collect();
    ConfigError::InvalidValues(values)
}
