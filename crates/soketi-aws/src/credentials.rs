//! Credentials, found the way the AWS SDKs and CLI find them, in their order: environment
//! variables, the shared `credentials` and `config` files, web identity (EKS IAM roles for service
//! accounts), the container endpoint (ECS task roles, EKS Pod Identity), then EC2 instance
//! metadata.
//!
//! The chain reads variables only from the map it is given, never from the process (except in
//! [`CredentialsProvider::from_process_env`]), so tests can describe any environment without
//! touching the real one. Temporary credentials are kept until shortly before they expire, then
//! the whole chain runs again: a pod whose role changed picks the new one up without a restart.
//!
//! Not supported, because each needs more of the SDK than this crate carries: assuming a role
//! from another profile's credentials (`role_arn` with `source_profile` or `credential_source`),
//! IAM Identity Center (`sso_*`) and `credential_process`. A profile that asks for one of them is
//! an error naming what to use instead, rather than a silent skip to other credentials.

mod container;
mod http;
mod metadata;
mod profile;
#[cfg(test)]
mod tests;
mod web_identity;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::HttpClient;

/// An access key, with its session token when temporary.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
    /// When temporary credentials expire.
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for Credentials {
    // The key id is an identifier AWS itself prints in logs; the secret and the token are not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<hidden>"),
            )
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// The places the chain looks for credentials, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsSource {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    Environment,
    /// A profile of the shared `credentials` and `config` files.
    Profile,
    /// STS `AssumeRoleWithWebIdentity` with a token file (`AWS_WEB_IDENTITY_TOKEN_FILE`).
    WebIdentity,
    /// The container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_*_URI`).
    Container,
    /// The EC2 instance metadata service.
    InstanceMetadata,
}

impl CredentialsSource {
    /// Every source, in the order the chain tries them.
    const ALL: [CredentialsSource; 5] = [
        CredentialsSource::Environment,
        CredentialsSource::Profile,
        CredentialsSource::WebIdentity,
        CredentialsSource::Container,
        CredentialsSource::InstanceMetadata,
    ];
}

impl fmt::Display for CredentialsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialsSource::Environment => "environment variables",
            CredentialsSource::Profile => "shared config and credentials files",
            CredentialsSource::WebIdentity => "web identity",
            CredentialsSource::Container => "container credentials endpoint",
            CredentialsSource::InstanceMetadata => "EC2 instance metadata",
        })
    }
}

/// Why no credentials could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing in the chain had credentials; the message says what each source lacked.
    #[error("no AWS credentials found: {0}")]
    NotFound(String),
    /// One variable of a pair is set without the other.
    #[error(
        "{present} is set but {missing} is not: set both, or unset {present} to let the next \
         sources be tried"
    )]
    MissingVariable {
        /// The variable that is set.
        present: &'static str,
        /// The one that is missing.
        missing: &'static str,
    },
    /// A variable holds something that cannot be used.
    #[error("{name} cannot be used: {why}")]
    InvalidSetting {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A file the configuration names could not be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    ReadFile {
        /// What the file is for.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A profile has one key of an access key pair without the other.
    #[error("profile `{profile}` ({files}) sets {present} but not {missing}")]
    IncompleteProfile {
        /// The profile.
        profile: String,
        /// The files it was read from.
        files: String,
        /// The key that is set.
        present: &'static str,
        /// The key that is missing.
        missing: &'static str,
    },
    /// A profile gets its credentials in a way this chain does not support.
    #[error(
        "profile `{profile}` ({files}) gets its credentials through {kind}, which soketi does not \
         support: give the profile aws_access_key_id and aws_secret_access_key, or use \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, web identity (AWS_WEB_IDENTITY_TOKEN_FILE \
         and AWS_ROLE_ARN), or a container or instance role"
    )]
    UnsupportedProfile {
        /// The profile.
        profile: String,
        /// The files it was read from.
        files: String,
        /// What it asks for.
        kind: &'static str,
    },
    /// A credentials service could not be reached.
    #[error("{from}: {url} could not be reached: {why}")]
    Unreachable {
        /// The source that made the request.
        from: CredentialsSource,
        /// The URL requested.
        url: String,
        /// Why.
        why: String,
    },
    /// A credentials service did not answer in time.
    #[error("{from}: {url} did not answer within {after:?}")]
    Timeout {
        /// The source that made the request.
        from: CredentialsSource,
        /// The URL requested.
        url: String,
        /// The time allowed.
        after: Duration,
    },
    /// A credentials service answered with an error status.
    #[error("{from}: {url} answered {status}: {message}")]
    Status {
        /// The source that made the request.
        from: CredentialsSource,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The service's message, or the start of its answer.
        message: String,
    },
    /// A credentials service answered something that is not credentials.
    #[error("{from}: the answer of {url} is not usable: {why}")]
    InvalidAnswer {
        /// The source that made the request.
        from: CredentialsSource,
        /// The URL requested.
        url: String,
        /// What did not fit.
        why: String,
    },
}

/// When temporary credentials are refreshed: this long before they expire, or half their
/// lifetime before when that is shorter.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The least time between two runs of the chain while credentials are held, so that a source
/// handing out credentials already near their end is not asked again at every request.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Finds credentials and keeps them until shortly before they expire.
pub struct CredentialsProvider {
    inner: Inner,
}

enum Inner {
    Fixed(Credentials),
    Chain(Box<Chain>),
}

impl fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Fixed(credentials) => f
                .debug_tuple("CredentialsProvider::Fixed")
                .field(credentials)
                .finish(),
            Inner::Chain(_) => f.write_str("CredentialsProvider::Chain"),
        }
    }
}

impl CredentialsProvider {
    /// Always these credentials.
    pub fn fixed(credentials: Credentials) -> Self {
        Self {
            inner: Inner::Fixed(credentials),
        }
    }

    /// The default chain over the variables `env`, making its requests with `http`.
    pub fn chain(env: HashMap<String, String>, http: HttpClient) -> Self {
        Self {
            inner: Inner::Chain(Box::new(Chain {
                env: Env(env),
                http,
                cache: parking_lot::Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
                clock: Arc::new(SystemTime::now),
            })),
        }
    }

    /// The default chain over this process's environment. Variables whose name or value is not
    /// UTF-8 are left out rather than failing: the chain reads text, and only a file path could
    /// be lost that way.
    pub fn from_process_env(http: HttpClient) -> Self {
        let env = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Self::chain(env, http)
    }

    /// The chain with another clock, so that tests can make time pass.
    #[cfg(test)]
    fn with_clock(mut self, clock: Clock) -> Self {
        if let Inner::Chain(chain) = &mut self.inner {
            chain.clock = clock;
        }
        self
    }

    /// The credentials to sign with now: the ones held while they are fresh, else the chain's.
    pub async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        match &self.inner {
            Inner::Fixed(credentials) => Ok(credentials.clone()),
            Inner::Chain(chain) => chain.credentials().await,
        }
    }
}

/// What time it is.
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The default chain and what it found last.
struct Chain {
    env: Env,
    http: HttpClient,
    /// The credentials held; read without waiting by every call.
    cache: parking_lot::Mutex<Option<Cached>>,
    /// Held while the chain runs, so that concurrent callers share one run.
    refresh: tokio::sync::Mutex<()>,
    clock: Clock,
}

/// Credentials held, and when to look for new ones (never for long-term credentials).
struct Cached {
    credentials: Credentials,
    refresh_at: Option<SystemTime>,
}

impl Cached {
    fn new(credentials: Credentials, now: SystemTime) -> Self {
        let refresh_at = credentials.expires.map(|expires| {
            let lifetime = expires.duration_since(now).unwrap_or_default();
            let margin = REFRESH_MARGIN.min(lifetime / 2);
            let at = expires.checked_sub(margin).unwrap_or(now);
            at.max(now + MIN_REFRESH_INTERVAL)
        });
        Self {
            credentials,
            refresh_at,
        }
    }

    fn is_fresh(&self, now: SystemTime) -> bool {
        self.refresh_at.is_none_or(|at| now < at)
    }

    fn is_valid(&self, now: SystemTime) -> bool {
        self.credentials.expires.is_none_or(|expires| now < expires)
    }
}

impl Chain {
    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        if let Some(fresh) = self.held(Cached::is_fresh) {
            return Ok(fresh);
        }
        let _running = match self.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Another caller is running the chain: signing with credentials that are still
                // valid beats waiting for it.
                if let Some(valid) = self.held(Cached::is_valid) {
                    return Ok(valid);
                }
                self.refresh.lock().await
            }
        };
        // The caller waited for may have found fresh credentials.
        if let Some(fresh) = self.held(Cached::is_fresh) {
            return Ok(fresh);
        }
        match self.resolve().await {
            Ok(credentials) => {
                let cached = Cached::new(credentials.clone(), (self.clock)());
                *self.cache.lock() = Some(cached);
                Ok(credentials)
            }
            Err(error) => {
                let now = (self.clock)();
                let mut cache = self.cache.lock();
                match cache.as_mut().filter(|cached| cached.is_valid(now)) {
                    Some(cached) => {
                        tracing::warn!(
                            %error,
                            "could not refresh the AWS credentials; the current ones are used \
                             until they expire"
                        );
                        let retry = now + MIN_REFRESH_INTERVAL;
                        cached.refresh_at = Some(
                            cached
                                .credentials
                                .expires
                                .map_or(retry, |expires| expires.min(retry)),
                        );
                        Ok(cached.credentials.clone())
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// The credentials held, if `usable` says they are at the current time.
    fn held(&self, usable: fn(&Cached, SystemTime) -> bool) -> Option<Credentials> {
        let now = (self.clock)();
        self.cache
            .lock()
            .as_ref()
            .filter(|cached| usable(cached, now))
            .map(|cached| cached.credentials.clone())
    }

    /// Runs the chain: the first source with credentials gives them, the first that fails stops
    /// it, and the others say why they had none.
    async fn resolve(&self) -> Result<Credentials, CredentialsError> {
        let mut tried = Vec::new();
        for source in CredentialsSource::ALL {
            match self.try_source(source).await? {
                Step::Found(credentials) => {
                    let key = &credentials.access_key_id;
                    tracing::debug!(%source, %key, "found AWS credentials");
                    return Ok(credentials);
                }
                Step::Skipped(why) => tried.push(format!("{source}: {why}")),
            }
        }
        Err(CredentialsError::NotFound(tried.join("; ")))
    }

    async fn try_source(&self, source: CredentialsSource) -> Result<Step, CredentialsError> {
        let (env, http) = (&self.env, &self.http);
        match source {
            CredentialsSource::Environment => environment(env),
            CredentialsSource::Profile => match profile::load(env).await? {
                Step::Found(profile::Found::Keys(credentials)) => Ok(Step::Found(credentials)),
                Step::Found(profile::Found::WebIdentity(config)) => {
                    web_identity::web_identity(http, env, &config)
                        .await
                        .map(Step::Found)
                }
                Step::Skipped(why) => Ok(Step::Skipped(why)),
            },
            CredentialsSource::WebIdentity => match web_identity::WebIdentity::from_env(env)? {
                Step::Found(config) => web_identity::web_identity(http, env, &config)
                    .await
                    .map(Step::Found),
                Step::Skipped(why) => Ok(Step::Skipped(why)),
            },
            CredentialsSource::Container => container::container(http, env).await,
            CredentialsSource::InstanceMetadata => metadata::instance_metadata(http, env).await,
        }
    }
}

/// What a source had: credentials (or what leads to them), or why not.
enum Step<T = Credentials> {
    Found(T),
    Skipped(String),
}

/// The variables the chain reads.
struct Env(HashMap<String, String>);

impl Env {
    /// The variable `name`, unless unset or empty (the SDKs take an empty variable as unset).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// The first source: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
fn environment(env: &Env) -> Result<Step, CredentialsError> {
    const ID: &str = "AWS_ACCESS_KEY_ID";
    const SECRET: &str = "AWS_SECRET_ACCESS_KEY";
    match (env.get(ID), env.get(SECRET)) {
        (Some(id), Some(secret)) => Ok(Step::Found(Credentials {
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
            session_token: env.get("AWS_SESSION_TOKEN").map(str::to_owned),
            expires: None,
        })),
        (Some(_), None) => Err(CredentialsError::MissingVariable {
            present: ID,
            missing: SECRET,
        }),
        (None, Some(_)) => Err(CredentialsError::MissingVariable {
            present: SECRET,
            missing: ID,
        }),
        (None, None) => Ok(Step::Skipped(format!("{ID} and {SECRET} are not set"))),
    }
}
