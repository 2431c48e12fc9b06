//! The shared `credentials` and `config` files: which profile, where the files are, the INI
//! dialect the AWS tools write, and what the profile asks for.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::web_identity::WebIdentity;
use super::{Credentials, CredentialsError, Env, Step};

/// What a profile leads to.
pub(super) enum Found {
    /// Keys written in the profile.
    Keys(Credentials),
    /// A role to assume with a web identity token (`role_arn` and `web_identity_token_file`).
    WebIdentity(WebIdentity),
}

/// One `[section]` of a file and its properties, keys in lowercase.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Section {
    pub(super) name: String,
    pub(super) properties: Vec<(String, String)>,
}

/// The profile the environment names, from the files it names.
pub(super) async fn load(env: &Env) -> Result<Step<Found>, CredentialsError> {
    let name = env.get("AWS_PROFILE").unwrap_or("default");
    let home = env.get("HOME").or_else(|| env.get("USERPROFILE"));
    let credentials_path = path(env, home, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let config_path = path(env, home, "AWS_CONFIG_FILE", "config");
    if credentials_path.is_none() && config_path.is_none() {
        return Ok(Step::Skipped(
            "HOME is not set, nor AWS_SHARED_CREDENTIALS_FILE or AWS_CONFIG_FILE".to_owned(),
        ));
    }

    let mut properties = HashMap::new();
    let mut found = false;
    let mut described = Vec::new();
    // The config file first: the credentials file wins, key by key.
    for (path, in_config) in [(&config_path, true), (&credentials_path, false)] {
        let Some(path) = path else { continue };
        let what = if in_config {
            "AWS config file"
        } else {
            "AWS shared credentials file"
        };
        let Some(text) = read(path, what).await? else {
            described.push(format!("{} (no such file)", path.display()));
            continue;
        };
        described.push(path.display().to_string());
        for section in parse(&text) {
            let matches = if in_config {
                config_profile_name(&section.name) == Some(name)
            } else {
                section.name == name
            };
            if matches {
                found = true;
                properties.extend(section.properties);
            }
        }
    }
    let files = described.join(", ");
    if !found {
        return Ok(Step::Skipped(format!("no profile `{name}` in {files}")));
    }
    interpret(name, &files, &properties)
}

/// What a profile's properties ask for, in the SDKs' order of precedence.
fn interpret(
    name: &str,
    files: &str,
    properties: &HashMap<String, String>,
) -> Result<Step<Found>, CredentialsError> {
    let get = |key: &str| {
        properties
            .get(key)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    };
    let unsupported = |kind| CredentialsError::UnsupportedProfile {
        profile: name.to_owned(),
        files: files.to_owned(),
        kind,
    };
    if let Some(role_arn) = get("role_arn") {
        if let Some(token_file) = get("web_identity_token_file") {
            return Ok(Step::Found(Found::WebIdentity(WebIdentity {
                role_arn: role_arn.to_owned(),
                token_file: PathBuf::from(token_file),
                session_name: get("role_session_name").map(str::to_owned),
                region: get("region").map(str::to_owned),
            })));
        }
        return Err(unsupported(if get("source_profile").is_some() {
            "a role assumed with another profile's credentials (role_arn with source_profile)"
        } else if get("credential_source").is_some() {
            "a role assumed with other credentials (role_arn with credential_source)"
        } else {
            "a role assumed without web_identity_token_file (role_arn)"
        }));
    }
    if get("credential_process").is_some() {
        return Err(unsupported("an external program (credential_process)"));
    }
    if properties.keys().any(|key| key.starts_with("sso_")) {
        return Err(unsupported("IAM Identity Center (sso_* settings)"));
    }
    const ID: &str = "aws_access_key_id";
    const SECRET: &str = "aws_secret_access_key";
    let incomplete = |present, missing| CredentialsError::IncompleteProfile {
        profile: name.to_owned(),
        files: files.to_owned(),
        present,
        missing,
    };
    match (get(ID), get(SECRET)) {
        (Some(id), Some(secret)) => Ok(Step::Found(Found::Keys(Credentials {
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
            session_token: get("aws_session_token").map(str::to_owned),
            expires: None,
        }))),
        (Some(_), None) => Err(incomplete(ID, SECRET)),
        (None, Some(_)) => Err(incomplete(SECRET, ID)),
        (None, None) => Ok(Step::Skipped(format!(
            "profile `{name}` ({files}) has no credentials"
        ))),
    }
}

/// The file `variable` names, else `~/.aws/{file}`; `~/` at its start is the home directory,
/// as the AWS tools read it.
fn path(env: &Env, home: Option<&str>, variable: &str, file: &str) -> Option<PathBuf> {
    match env.get(variable) {
        Some(named) => match (named.strip_prefix("~/"), home) {
            (Some(rest), Some(home)) => Some(Path::new(home).join(rest)),
            _ => Some(PathBuf::from(named)),
        },
        None => home.map(|home| Path::new(home).join(".aws").join(file)),
    }
}

/// The file's text, or `None` when there is no such file.
async fn read(path: &Path, what: &'static str) -> Result<Option<String>, CredentialsError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CredentialsError::ReadFile {
            what,
            path: path.to_owned(),
            source,
        }),
    }
}

/// The profile a section of the config file describes: `[profile name]`, or `[default]`.
/// Other sections (`[sso-session x]`, `[services x]`) are not profiles.
fn config_profile_name(section: &str) -> Option<&str> {
    if section == "default" {
        return Some(section);
    }
    let rest = section.strip_prefix("profile")?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

/// The sections of an INI file as the AWS tools write them: `[name]` headers, `key = value`
/// properties, whole-line comments starting with `#` or `;`, inline comments after whitespace,
/// and indented lines continuing a property (the sub-properties of `s3 =`), which are skipped.
/// Lines that fit none of these are skipped too: the AWS tools would refuse the file, but no
/// property of a profile is lost by reading on.
pub(super) fn parse(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut in_property = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            in_property = false;
            match header.split_once(']') {
                Some((name, _)) => sections.push(Section {
                    name: name.trim().to_owned(),
                    properties: Vec::new(),
                }),
                // A broken header: its properties must not land in the previous section.
                None => sections.push(Section {
                    name: String::new(),
                    properties: Vec::new(),
                }),
            }
            continue;
        }
        if in_property && line.starts_with(char::is_whitespace) {
            continue;
        }
        let (Some(section), Some((key, value))) = (sections.last_mut(), trimmed.split_once('='))
        else {
            continue;
        };
        in_property = true;
        section.properties.push((
            key.trim().to_ascii_lowercase(),
            without_comment(value.trim()).to_owned(),
        ));
    }
    sections
}

/// `value` without a comment that starts after whitespace (`key = value # note`).
fn without_comment(value: &str) -> &str {
    let mut previous_blank = false;
    for (index, c) in value.char_indices() {
        if previous_blank && (c == '#' || c == ';') {
            return value[..index].trim_end();
        }
        previous_blank = c.is_whitespace();
    }
    value
}
