use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_smithy_types::date_time::{DateTime, Format};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::profile::{Section, parse};
use super::web_identity::{form, unescape};
use super::{Clock, Credentials, CredentialsError, CredentialsProvider};

/// A request the test server received; header names in lowercase.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// What the test server answers to a method and path: a status and a body.
type Answers = HashMap<(String, String), (u16, String)>;

/// A local HTTP/1.1 server that plays an AWS service: canned answers per method and path (404
/// for others), and a record of every request.
struct TestServer {
    url: String,
    answers: Arc<Mutex<Answers>>,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let answers = Arc::new(Mutex::new(Answers::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (answers, received) = (answers.clone(), received.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (answers, received) = (answers.clone(), received.clone());
                    tokio::spawn(async move {
                        let _answered = read_request(stream, &answers, &received).await;
                    });
                }
            }
        });
        Self {
            url,
            answers,
            received,
            task,
        }
    }

    /// From now on, answers `method path` with `status` and `body`.
    fn answer(&self, method: &str, path: &str, status: u16, body: impl Into<String>) {
        self.answers
            .lock()
            .insert((method.to_owned(), path.to_owned()), (status, body.into()));
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.received().iter().filter(|r| r.path == path).count()
    }
}

/// Reads one request from `stream`, records it, and answers it.
async fn read_request(
    mut stream: TcpStream,
    answers: &Mutex<Answers>,
    received: &Mutex<Vec<Received>>,
) -> Option<()> {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let mut chunk = [0; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end..head_end + length]).into_owned();
    let (status, answer) = answers
        .lock()
        .get(&(method.clone(), path.clone()))
        .cloned()
        .unwrap_or((404, "not found".to_owned()));
    received.lock().push(Received {
        method,
        path,
        headers,
        body,
    });
    let response = format!(
        "HTTP/1.1 {status} Canned\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await.ok()?;
    stream.shutdown().await.ok()
}

/// An address that accepts connections and never answers, as a firewall in front of nothing
/// would behave.
async fn silent_server() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (url, task)
}

/// An environment with `pairs`, a home directory without AWS files unless `home` has them, and
/// instance metadata disabled unless `pairs` says otherwise.
fn env(home: &Path, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("HOME", home.to_str().expect("UTF-8 temporary path")),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .chain(pairs.iter().copied())
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    env.retain(|_, value| !value.is_empty());
    env
}

fn provider(env: HashMap<String, String>) -> CredentialsProvider {
    CredentialsProvider::chain(env, crate::http_client().expect("HTTP client"))
}

/// A clock that tests move forward, in seconds from the real time.
fn clock() -> (Clock, Arc<AtomicU64>) {
    let offset = Arc::new(AtomicU64::new(0));
    let clock: Clock = {
        let offset = offset.clone();
        Arc::new(move || SystemTime::now() + Duration::from_secs(offset.load(Ordering::SeqCst)))
    };
    (clock, offset)
}

fn iso(time: SystemTime) -> String {
    DateTime::from(time)
        .fmt(Format::DateTime)
        .expect("a time in range")
}

/// The times `a` and `b` agree to the second, as the services write them.
fn same_second(a: Option<SystemTime>, b: SystemTime) -> bool {
    let a = a.expect("an expiry");
    let gap = a.duration_since(b).unwrap_or_else(|e| e.duration());
    gap < Duration::from_secs(1)
}

fn json_credentials(id: &str, expires: SystemTime) -> String {
    serde_json::json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": id,
        "SecretAccessKey": "secret-of-".to_owned() + id,
        "Token": "token-of-".to_owned() + id,
        "Expiration": iso(expires),
        "LastUpdated": iso(SystemTime::now()),
    })
    .to_string()
}

fn sts_answer(expires: SystemTime) -> String {
    format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:soketi</SubjectFromWebIdentityToken>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/soketi/session</Arn>
      <AssumedRoleId>AROAEXAMPLE:session</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAWEB</AccessKeyId>
      <SecretAccessKey>web/secret&amp;more</SecretAccessKey>
      <SessionToken>web&lt;token&gt;</SessionToken>
      <Expiration>{}</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#,
        iso(expires)
    )
}

/// The fields of a form body, decoded enough for the values these tests send.
fn form_fields(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| {
            let mut decoded = Vec::new();
            let mut bytes = value.bytes();
            while let Some(b) = bytes.next() {
                if b == b'%' {
                    let hex: String = [bytes.next(), bytes.next()]
                        .into_iter()
                        .flatten()
                        .map(char::from)
                        .collect();
                    decoded.push(u8::from_str_radix(&hex, 16).expect("percent-encoding"));
                } else {
                    decoded.push(b);
                }
            }
            (name.to_owned(), String::from_utf8(decoded).expect("UTF-8"))
        })
        .collect()
}

fn keys(id: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: id.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: token.map(str::to_owned),
        expires: None,
    }
}

#[tokio::test]
async fn environment_variables_are_used_first() {
    let home = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(home.path().join(".aws")).expect("mkdir");
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[default]\naws_access_key_id = FILE\naws_secret_access_key = file\n",
    )
    .expect("write");
    for (token, expected) in [("", None), ("session", Some("session"))] {
        let vars = env(
            home.path(),
            &[
                ("AWS_ACCESS_KEY_ID", "AKIAENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_SESSION_TOKEN", token),
            ],
        );
        let found = provider(vars).credentials().await.expect("credentials");
        assert_eq!(found, keys("AKIAENV", "env-secret", expected));
    }
}

#[tokio::test]
async fn half_set_environment_names_the_missing_variable() {
    let home = tempfile::tempdir().expect("temporary directory");
    for (set, missing) in [
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"),
    ] {
        let error = provider(env(home.path(), &[(set, "x")]))
            .credentials()
            .await
            .expect_err("half a key");
        let CredentialsError::MissingVariable {
            present,
            missing: m,
        } = &error
        else {
            panic!("not MissingVariable: {error}");
        };
        assert_eq!((*present, *m), (set, missing));
        assert!(error.to_string().contains(missing), "{error}");
    }
}

#[test]
fn ini_files_are_read_as_the_aws_tools_write_them() {
    fn check(text: &str, expected: &[(&str, &[(&str, &str)])]) {
        let expected: Vec<Section> = expected
            .iter()
            .map(|(name, properties)| Section {
                name: (*name).to_owned(),
                properties: properties
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            })
            .collect();
        assert_eq!(parse(text), expected, "{text}");
    }
    check("", &[]);
    check(
        "key = before any section\n[a]\nk=v",
        &[("a", &[("k", "v")])],
    );
    check(
        "# comment\n; comment\n[ default ]  # note\n  Aws_Access_Key_Id = ID ; note\n\
         secret=a#b\n\n",
        &[("default", &[("aws_access_key_id", "ID"), ("secret", "a#b")])],
    );
    check(
        "[profile x]\ns3 =\n  max_concurrent_requests = 20\nregion = eu-west-1\r\n",
        &[("profile x", &[("s3", ""), ("region", "eu-west-1")])],
    );
    check(
        "[a]\nk = 1\n[broken\nk = 2\n[b]\nk = 3",
        &[
            ("a", &[("k", "1")]),
            ("", &[("k", "2")]),
            ("b", &[("k", "3")]),
        ],
    );
}

#[test]
fn xml_entities_and_forms_are_encoded() {
    for (text, expected) in [
        ("plain", "plain"),
        ("a&amp;b&lt;c&gt;d&quot;e&apos;f", "a&b<c>d\"e'f"),
        ("&#65;&#x42;&#X43;", "ABC"),
        ("&unknown; & &#xZZ; &amp", "&unknown; & &#xZZ; &amp"),
    ] {
        assert_eq!(unescape(text), expected, "{text}");
    }
    assert_eq!(
        form(&[("Action", "Do It"), ("Token", "a+b/c=d&e~f.g-h_i")]),
        "Action=Do%20It&Token=a%2Bb%2Fc%3Dd%26e~f.g-h_i"
    );
}

#[tokio::test]
async fn the_default_profile_of_the_credentials_file_is_read() {
    let home = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(home.path().join(".aws")).expect("mkdir");
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[other]\naws_access_key_id = OTHER\naws_secret_access_key = other\n\n\
         [default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = file/secret+\n",
    )
    .expect("write");
    let found = provider(env(home.path(), &[]))
        .credentials()
        .await
        .expect("credentials");
    assert_eq!(found, keys("AKIAFILE", "file/secret+", None));
}

#[tokio::test]
async fn a_named_profile_merges_both_files_and_the_credentials_file_wins() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let credentials = dir.path().join("creds");
    let config = dir.path().join("conf");
    std::fs::write(
        &credentials,
        "# written by hand\n[x]\naws_access_key_id = FROM-CREDENTIALS  ; wins\n",
    )
    .expect("write");
    std::fs::write(
        &config,
        "[default]\naws_access_key_id = DEFAULT\naws_secret_access_key = default\n\
         [profile x]\n; comment\naws_access_key_id = FROM-CONFIG\n\
         aws_secret_access_key = config-secret\naws_session_token = config-token\n\
         region = eu-west-3\n\
         [x]\naws_secret_access_key = not-a-profile-in-config\n",
    )
    .expect("write");
    let vars = env(
        Path::new("/nonexistent"),
        &[
            ("AWS_PROFILE", "x"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.to_str().expect("UTF-8"),
            ),
            ("AWS_CONFIG_FILE", config.to_str().expect("UTF-8")),
        ],
    );
    let found = provider(vars).credentials().await.expect("credentials");
    assert_eq!(
        found,
        keys("FROM-CREDENTIALS", "config-secret", Some("config-token"))
    );
}

#[tokio::test]
async fn profiles_that_need_more_than_this_chain_are_errors_saying_what_to_use() {
    let home = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(home.path().join(".aws")).expect("mkdir");
    for (profile, kind) in [
        (
            "role_arn = arn:aws:iam::1:role/r\nsource_profile = base",
            "source_profile",
        ),
        (
            "role_arn = arn:aws:iam::1:role/r\ncredential_source = Ec2InstanceMetadata",
            "credential_source",
        ),
        (
            "sso_session = corp\nsso_account_id = 1\nsso_role_name = r",
            "sso_",
        ),
        ("credential_process = /bin/creds", "credential_process"),
    ] {
        std::fs::write(
            home.path().join(".aws/config"),
            format!(
                "[profile base]\naws_access_key_id = A\naws_secret_access_key = B\n\
                 [default]\n{profile}\n"
            ),
        )
        .expect("write");
        let error = provider(env(home.path(), &[]))
            .credentials()
            .await
            .expect_err("unsupported profile");
        let message = error.to_string();
        assert!(
            matches!(error, CredentialsError::UnsupportedProfile { .. }),
            "{message}"
        );
        assert!(message.contains(kind), "{message}");
        assert!(message.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{message}");
    }
}

#[tokio::test]
async fn a_profile_with_half_a_key_names_the_missing_one() {
    let home = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(home.path().join(".aws")).expect("mkdir");
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[default]\naws_access_key_id = A\n",
    )
    .expect("write");
    let error = provider(env(home.path(), &[]))
        .credentials()
        .await
        .expect_err("half a key");
    assert!(
        matches!(
            error,
            CredentialsError::IncompleteProfile {
                missing: "aws_secret_access_key",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn nothing_found_lists_every_source_and_why() {
    let home = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(home.path().join(".aws")).expect("mkdir");
    // A profile with settings but no credentials is common, and not an error.
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion = eu-west-1\n",
    )
    .expect("write");
    let error = provider(env(home.path(), &[]))
        .credentials()
        .await
        .expect_err("no credentials");
    let message = error.to_string();
    assert!(matches!(error, CredentialsError::NotFound(_)), "{message}");
    for expected in [
        "environment variables: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
        "shared config and credentials files: profile `default`",
        "has no credentials",
        "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is not set",
        "container credentials endpoint: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and",
        "EC2 instance metadata: AWS_EC2_METADATA_DISABLED is true",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }

    let vars = env(Path::new("/nonexistent"), &[("AWS_PROFILE", "absent")]);
    let message = provider(vars)
        .credentials()
        .await
        .expect_err("no credentials")
        .to_string();
    assert!(
        message.contains(
            "no profile `absent` in /nonexistent/.aws/config (no such file), \
             /nonexistent/.aws/credentials (no such file)"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn web_identity_assumes_the_role_with_the_token_of_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "first.jwt\n").expect("write");
    let sts = TestServer::start().await;
    let expires = SystemTime::now() + Duration::from_secs(3600);
    sts.answer("POST", "/", 200, sts_answer(expires));
    let vars = env(
        dir.path(),
        &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.to_str().expect("UTF-8"),
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/soketi"),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
    );
    let (clock, offset) = clock();
    let provider = provider(vars).with_clock(clock);

    let found = provider.credentials().await.expect("credentials");
    assert_eq!(found.access_key_id, "ASIAWEB");
    assert_eq!(found.secret_access_key, "web/secret&more");
    assert_eq!(found.session_token.as_deref(), Some("web<token>"));
    assert!(same_second(found.expires, expires), "{found:?}");
    let received = sts.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    // The token is the proof: the call is not signed.
    assert!(!received[0].headers.contains_key("authorization"));
    assert!(received[0].headers["content-type"].starts_with("application/x-www-form-urlencoded"));
    let fields = form_fields(&received[0].body);
    assert_eq!(fields["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(fields["Version"], "2011-06-15");
    assert_eq!(fields["RoleArn"], "arn:aws:iam::123456789012:role/soketi");
    assert_eq!(fields["WebIdentityToken"], "first.jwt");
    assert!(
        fields["RoleSessionName"].starts_with("soketi-"),
        "{fields:?}"
    );

    // The token is rotated on disk; the refresh shortly before expiry sends the new one.
    std::fs::write(&token_file, "second.jwt").expect("write");
    offset.store(3600 - 4 * 60, Ordering::SeqCst);
    provider.credentials().await.expect("credentials");
    let received = sts.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        form_fields(&received[1].body)["WebIdentityToken"],
        "second.jwt"
    );
}

#[tokio::test]
async fn a_profile_can_name_a_web_identity_and_sts_errors_are_explained() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "profile.jwt").expect("write");
    std::fs::create_dir(dir.path().join(".aws")).expect("mkdir");
    std::fs::write(
        dir.path().join(".aws/config"),
        format!(
            "[profile irsa]\nrole_arn = arn:aws:iam::1:role/from-profile\n\
             web_identity_token_file = {}\nrole_session_name = named\n",
            token_file.display()
        ),
    )
    .expect("write");
    let sts = TestServer::start().await;
    sts.answer(
        "POST",
        "/",
        403,
        "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
         <Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message>\
         </Error></ErrorResponse>",
    );
    let vars = env(
        dir.path(),
        &[("AWS_PROFILE", "irsa"), ("AWS_ENDPOINT_URL", &sts.url)],
    );
    let error = provider(vars).credentials().await.expect_err("refused");
    assert!(
        matches!(error, CredentialsError::Status { status: 403, .. }),
        "{error}"
    );
    assert!(
        error.to_string().ends_with(
            "answered 403: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"
        ),
        "{error}"
    );
    let fields = form_fields(&sts.received()[0].body);
    assert_eq!(fields["RoleArn"], "arn:aws:iam::1:role/from-profile");
    assert_eq!(fields["RoleSessionName"], "named");
    assert_eq!(fields["WebIdentityToken"], "profile.jwt");
}

#[tokio::test]
async fn a_web_identity_token_without_a_role_is_an_error() {
    let home = tempfile::tempdir().expect("temporary directory");
    let vars = env(
        home.path(),
        &[("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")],
    );
    let error = provider(vars).credentials().await.expect_err("no role");
    assert!(
        matches!(
            error,
            CredentialsError::MissingVariable {
                missing: "AWS_ROLE_ARN",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn the_container_endpoint_is_asked_with_the_token_of_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-token\n").expect("write");
    let agent = TestServer::start().await;
    let expires = SystemTime::now() + Duration::from_secs(6 * 3600);
    agent.answer(
        "GET",
        "/v1/credentials",
        200,
        json_credentials("ASIAPOD", expires),
    );
    let url = format!("{}/v1/credentials", agent.url);
    let vars = env(
        dir.path(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.to_str().expect("UTF-8"),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ignored"),
        ],
    );
    let found = provider(vars).credentials().await.expect("credentials");
    assert_eq!(found.access_key_id, "ASIAPOD");
    assert_eq!(found.secret_access_key, "secret-of-ASIAPOD");
    assert_eq!(found.session_token.as_deref(), Some("token-of-ASIAPOD"));
    assert!(same_second(found.expires, expires), "{found:?}");
    let received = agent.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "GET");
    assert_eq!(received[0].headers["authorization"], "pod-token");

    // Without the file, the token variable; an error answer's message is kept.
    agent.answer(
        "GET",
        "/v1/credentials",
        400,
        r#"{"code":"InvalidToken","message":"token expired"}"#,
    );
    let vars = env(
        dir.path(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "variable-token"),
        ],
    );
    let error = provider(vars).credentials().await.expect_err("refused");
    assert!(
        error
            .to_string()
            .ends_with("answered 400: InvalidToken: token expired"),
        "{error}"
    );
    assert_eq!(
        agent.received()[1].headers["authorization"],
        "variable-token"
    );
}

#[tokio::test]
async fn the_container_endpoint_is_refused_over_plain_http_to_other_hosts() {
    let home = tempfile::tempdir().expect("temporary directory");
    for url in [
        "http://example.com/credentials",
        "http://10.0.0.1/credentials",
        "http://169.254.170.3/credentials",
        "ftp://127.0.0.1/credentials",
    ] {
        let vars = env(home.path(), &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)]);
        let error = provider(vars).credentials().await.expect_err("refused");
        assert!(
            matches!(
                error,
                CredentialsError::InvalidSetting {
                    name: "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    ..
                }
            ),
            "{url}: {error}"
        );
    }
    for (host, allowed) in [
        ("127.0.0.1", true),
        ("127.1.2.3", true),
        ("localhost", true),
        ("[::1]", true),
        ("169.254.170.2", true),
        ("169.254.170.23", true),
        ("[fd00:ec2::23]", true),
        ("169.254.169.254", false),
        ("[fd00:ec2::254]", false),
        ("example.com", false),
    ] {
        assert_eq!(
            super::container::allowed_plain_http(host),
            allowed,
            "{host}"
        );
    }
}

/// Instance metadata as an EC2 instance with the role `soketi-node` serves it.
async fn metadata_server(expires: SystemTime) -> TestServer {
    let imds = TestServer::start().await;
    imds.answer("PUT", "/latest/api/token", 200, "imds-session-token");
    imds.answer(
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        200,
        "soketi-node\n",
    );
    imds.answer(
        "GET",
        "/latest/meta-data/iam/security-credentials/soketi-node",
        200,
        json_credentials("ASIAEC2", expires),
    );
    imds
}

#[tokio::test]
async fn instance_metadata_is_asked_with_a_session_token() {
    let home = tempfile::tempdir().expect("temporary directory");
    let expires = SystemTime::now() + Duration::from_secs(6 * 3600);
    let imds = metadata_server(expires).await;
    let vars = env(
        home.path(),
        &[
            ("AWS_EC2_METADATA_DISABLED", "false"),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                &format!("{}/", imds.url),
            ),
        ],
    );
    let found = provider(vars).credentials().await.expect("credentials");
    assert_eq!(found.access_key_id, "ASIAEC2");
    assert_eq!(found.session_token.as_deref(), Some("token-of-ASIAEC2"));
    assert!(same_second(found.expires, expires), "{found:?}");
    let received = imds.received();
    let asked: Vec<_> = received
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        asked,
        [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            (
                "GET",
                "/latest/meta-data/iam/security-credentials/soketi-node"
            ),
        ]
    );
    assert_eq!(
        received[0].headers["x-aws-ec2-metadata-token-ttl-seconds"],
        "21600"
    );
    for request in &received[1..] {
        assert_eq!(
            request.headers["x-aws-ec2-metadata-token"],
            "imds-session-token"
        );
    }
}

#[tokio::test]
async fn instance_metadata_is_skipped_when_disabled_absent_or_without_a_role() {
    let home = tempfile::tempdir().expect("temporary directory");
    let imds = metadata_server(SystemTime::now() + Duration::from_secs(3600)).await;
    let vars = env(
        home.path(),
        &[
            ("AWS_EC2_METADATA_DISABLED", "TRUE"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url),
        ],
    );
    let error = provider(vars).credentials().await.expect_err("disabled");
    assert!(
        error
            .to_string()
            .contains("AWS_EC2_METADATA_DISABLED is true"),
        "{error}"
    );
    assert!(imds.received().is_empty());

    imds.answer(
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        404,
        "",
    );
    let enabled = |url: &str| {
        env(
            home.path(),
            &[
                ("AWS_EC2_METADATA_DISABLED", ""),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url),
            ],
        )
    };
    let error = provider(enabled(&imds.url))
        .credentials()
        .await
        .expect_err("no role");
    assert!(matches!(error, CredentialsError::NotFound(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("no IAM role is attached to this instance"),
        "{error}"
    );

    // Off EC2 the address swallows packets: the chain gives up after a second.
    let (silent, task) = silent_server().await;
    let error = provider(enabled(&silent))
        .credentials()
        .await
        .expect_err("no answer");
    task.abort();
    assert!(matches!(error, CredentialsError::NotFound(_)), "{error}");
    assert!(
        error.to_string().contains("did not answer within 1s"),
        "{error}"
    );
}

#[tokio::test]
async fn credentials_are_kept_until_shortly_before_they_expire() {
    let home = tempfile::tempdir().expect("temporary directory");
    let agent = TestServer::start().await;
    let expires = SystemTime::now() + Duration::from_secs(3600);
    agent.answer("GET", "/creds", 200, json_credentials("FIRST", expires));
    let vars = env(
        home.path(),
        &[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            &format!("{}/creds", agent.url),
        )],
    );
    let (clock, offset) = clock();
    let provider = Arc::new(provider(vars).with_clock(clock));

    // Callers at once share one request, and later ones use what it found.
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.credentials().await })
        })
        .collect();
    for caller in callers {
        let found = caller.await.expect("caller").expect("credentials");
        assert_eq!(found.access_key_id, "FIRST");
    }
    offset.store(50 * 60, Ordering::SeqCst);
    assert_eq!(
        provider
            .credentials()
            .await
            .expect("credentials")
            .access_key_id,
        "FIRST"
    );
    assert_eq!(agent.count("/creds"), 1);

    // Less than five minutes left: new credentials.
    agent.answer(
        "GET",
        "/creds",
        200,
        json_credentials("SECOND", expires + Duration::from_secs(3600)),
    );
    offset.store(56 * 60, Ordering::SeqCst);
    assert_eq!(
        provider
            .credentials()
            .await
            .expect("credentials")
            .access_key_id,
        "SECOND"
    );
    assert_eq!(agent.count("/creds"), 2);

    // A failed refresh keeps the credentials while they are valid, and is retried later.
    agent.answer("GET", "/creds", 500, "agent down");
    offset.store(116 * 60, Ordering::SeqCst);
    assert_eq!(
        provider
            .credentials()
            .await
            .expect("credentials")
            .access_key_id,
        "SECOND"
    );
    assert_eq!(
        provider
            .credentials()
            .await
            .expect("credentials")
            .access_key_id,
        "SECOND"
    );
    assert_eq!(agent.count("/creds"), 3);
    offset.store(116 * 60 + 30, Ordering::SeqCst);
    assert_eq!(
        provider
            .credentials()
            .await
            .expect("credentials")
            .access_key_id,
        "SECOND"
    );
    assert_eq!(agent.count("/creds"), 4);

    // Once they have expired, the failure is the caller's.
    offset.store(121 * 60, Ordering::SeqCst);
    let error = provider.credentials().await.expect_err("expired");
    assert!(
        matches!(error, CredentialsError::Status { status: 500, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn short_lived_credentials_are_refreshed_at_half_their_lifetime() {
    let home = tempfile::tempdir().expect("temporary directory");
    let agent = TestServer::start().await;
    agent.answer(
        "GET",
        "/creds",
        200,
        json_credentials("SHORT", SystemTime::now() + Duration::from_secs(4 * 60)),
    );
    let vars = env(
        home.path(),
        &[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            &format!("{}/creds", agent.url),
        )],
    );
    let (clock, offset) = clock();
    let provider = provider(vars).with_clock(clock);
    provider.credentials().await.expect("credentials");
    offset.store(100, Ordering::SeqCst);
    provider.credentials().await.expect("credentials");
    assert_eq!(agent.count("/creds"), 1);
    offset.store(130, Ordering::SeqCst);
    provider.credentials().await.expect("credentials");
    assert_eq!(agent.count("/creds"), 2);
}

#[tokio::test]
async fn fixed_credentials_and_debug_output_keep_secrets() {
    let credentials = keys("AKIAFIXED", "very-secret", Some("secret-token"));
    let provider = CredentialsProvider::fixed(credentials.clone());
    assert_eq!(
        provider.credentials().await.expect("credentials"),
        credentials
    );
    for debug in [format!("{credentials:?}"), format!("{provider:?}")] {
        assert!(debug.contains("AKIAFIXED"), "{debug}");
        assert!(
            !debug.contains("very-secret") && !debug.contains("secret-token"),
            "{debug}"
        );
    }
}
