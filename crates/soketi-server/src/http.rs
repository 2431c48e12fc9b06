//! The HTTP side: routing, the WebSocket upgrade, and Pusher's signed HTTP API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, ORIGIN};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioTimer;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use soketi_protocol::channel::ChannelKind;
use soketi_protocol::http_auth;
use soketi_protocol::{App, ChannelName, SocketId, message};

use soketi_adapter_core::{Budget, ChannelCounts, Decision};

use crate::config::Mode;
use crate::console::stream::{self as console, ConsoleBody};
use crate::error::ApiError;
use crate::memory;
use crate::state::{State, unix_now};
use crate::{cors, websocket};

mod channels;
mod events;
mod upgrade;

use channels::{channel_info, channel_users, list_channels};
pub(crate) use events::frames_of;
use events::{publish, publish_batch};
use upgrade::upgrade;

type Body = Full<Bytes>;

/// What the main port answers with: a whole body, or a console's stream.
pub(crate) type ServerBody = Either<Full<Bytes>, ConsoleBody>;

/// How an HTTP/1 connection of either port is served: its request heads must arrive within the
/// headers timeout, which also closes an idle keep-alive connection, so that nobody holds a
/// socket by sending nothing or a byte at a time.
pub(crate) fn server_builder(config: &crate::config::Config) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.headers_timeout());
    builder
}

/// Answers one HTTP request.
pub(crate) async fn handle(
    state: Arc<State>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ServerBody>, Infallible> {
    let _in_flight = state.request_started();
    let origin = req.headers().get(ORIGIN).cloned();
    let mut response = if req.method() == Method::OPTIONS {
        // A CORS preflight: the headers below are the whole answer.
        let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
    } else {
        match route(&state, peer, req).await {
            Ok(response) => response,
            Err(e) => e.into_response().map(Either::Left),
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        cors::apply(&state.config.cors, origin.as_ref(), response.headers_mut());
    }
    Ok(response)
}

async fn route(
    state: &Arc<State>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ServerBody>, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "Not found.");
    let full_path = req.uri().path().to_owned();
    let prefix = state.config.path_prefix.trim_end_matches('/');
    let path = full_path.strip_prefix(prefix).ok_or_else(not_found)?;
    if !path.is_empty() && !path.starts_with('/') {
        return Err(not_found());
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if state.config.mode == Mode::Worker && !matches!(segments.as_slice(), [""] | ["ready"]) {
        // A worker only processes queues; its main port answers health checks.
        return Err(not_found());
    }
    let console_on = state.config.console.enabled;
    let whole = match (req.method(), segments.as_slice()) {
        (&Method::GET, [""]) => Ok(text(StatusCode::OK, "OK")),
        (&Method::GET, ["ready"]) => Ok(if state.is_closing() {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "The server is closing.").into_response()
        } else {
            text(StatusCode::OK, "OK")
        }),
        (&Method::GET, ["accept-traffic"]) => accept_traffic(state),
        (&Method::GET, ["app", key]) => {
            let key = (*key).to_owned();
            upgrade(state, peer, req, key)
        }
        (&Method::GET, ["console", "key"]) if console_on => {
            let query = query_pairs(req.uri().query());
            console::key(state, req.uri().path(), &query).await
        }
        (&Method::GET, ["console", rest @ ..]) if console_on => {
            console::asset(rest.first().copied().unwrap_or_default()).ok_or_else(not_found)
        }
        (&Method::GET, ["apps", app_id, "console"]) if console_on => {
            let app = find_app(state, app_id).await?;
            let query = query_pairs(req.uri().query());
            http_auth::verify_query(
                "GET",
                req.uri().path(),
                &query,
                &app.key,
                &app.secret,
                unix_now(),
            )
            .map_err(unauthorized)?;
            return Ok(console::open(state, &app).map(Either::Right));
        }
        (_, ["apps", app_id, rest @ ..]) => {
            let app_id = (*app_id).to_owned();
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            api(state, req, &app_id, &rest).await
        }
        _ => Err(not_found()),
    };
    whole.map(|response| response.map(Either::Left))
}

/// A plain text response.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// A JSON response with status 200.
pub(crate) fn json_response(value: &Value) -> Response<Body> {
    json_bytes(value.to_string().into_bytes())
}

/// A response with status 200 whose body is JSON already written.
pub(crate) fn json_bytes(json: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(json)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Whether a load balancer should send this node traffic: 500 while it closes or while this
/// process uses more than `memory_threshold` percent of the memory available to it.
fn accept_traffic(state: &State) -> Result<Response<Body>, ApiError> {
    let refuse = |why: &str| Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why));
    if state.is_closing() {
        return refuse("The server is closing. Choose another server.");
    }
    let memory = match memory::process() {
        Ok(memory) => memory,
        Err(e) => {
            // Failing open: a node that cannot measure itself is not known to be short of
            // memory, and refusing would take every such node out of the balancer at once.
            tracing::debug!(error = %e, "cannot read the memory usage for /accept-traffic");
            return Ok(json_response(&json!({ "memory": null })));
        }
    };
    let percent = memory.percent_used();
    if percent > state.config.http_api.accept_traffic.memory_threshold {
        return refuse("Low on memory here. Choose another server.");
    }
    Ok(json_response(&json!({
        "memory": {
            "usedSize": memory.used,
            "totalSize": memory.total,
            "percentUsage": percent,
        }
    })))
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A signed request to the HTTP API, checked and read.
struct ApiRequest {
    app: Arc<App>,
    query: Vec<(String, String)>,
    body: Bytes,
}

impl ApiRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A channel name from the path, checked against the app's rules.
    fn channel<'a>(&self, name: &'a str) -> Result<ChannelName<'a>, ApiError> {
        ChannelName::parse(name, self.app.limits.max_channel_name_length)
            .map_err(|e| bad_request(format!("{e}.")))
    }

    fn info(&self) -> Vec<String> {
        parse_info(self.param("info"))
    }
}

fn parse_info(info: Option<&str>) -> Vec<String> {
    info.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_info(info: &[String]) -> Result<(), ApiError> {
    match info
        .iter()
        .find(|i| !matches!(i.as_str(), "user_count" | "subscription_count"))
    {
        Some(unknown) => Err(bad_request(format!(
            "Unknown info attribute {unknown}; use user_count or subscription_count."
        ))),
        None => Ok(()),
    }
}

async fn api(
    state: &Arc<State>,
    req: Request<Incoming>,
    app_id: &str,
    rest: &[String],
) -> Result<Response<Body>, ApiError> {
    let app = find_app(state, app_id).await?;
    let metrics = state.metrics.app(&app.id);
    let (parts, body) = req.into_parts();
    let query = query_pairs(parts.uri.query());
    let mut received = 0;
    let response = async {
        // Everything the signature covers but the body first: an unsigned request is refused
        // before a byte of its body is read, and a body announced over the limit at once.
        http_auth::verify_query(
            parts.method.as_str(),
            parts.uri.path(),
            &query,
            &app.key,
            &app.secret,
            unix_now(),
        )
        .map_err(unauthorized)?;
        let limit = state.config.max_request_bytes();
        if announced_length(&parts.headers).is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let body = read_body(body, limit, state.config.body_timeout()).await?;
        received = body.len();
        http_auth::verify_body(&query, &body).map_err(unauthorized)?;
        let request = ApiRequest { app, query, body };
        signed_call(state, &parts.method, request, rest).await
    }
    .await
    .unwrap_or_else(ApiError::into_response);
    let sent = response.body().size_hint().exact().unwrap_or_default();
    metrics.http_call(received, usize::try_from(sent).unwrap_or(usize::MAX));
    Ok(response)
}

/// The app of `app_id`, or 404 (503 when the apps cannot be read).
pub(crate) async fn find_app(state: &State, app_id: &str) -> Result<Arc<App>, ApiError> {
    state
        .apps
        .find_by_id(app_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, app_id, "cannot look the app up");
            // The details (hosts, file paths, the store's own messages) go to the log only:
            // this answer goes to whoever asked, before any signature could be checked.
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The app store is unavailable; the server's log says why.",
            )
        })?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("The app {app_id} could not be found."),
            )
        })
}

/// The 401 of a request whose signature does not hold.
pub(crate) fn unauthorized(e: http_auth::HttpAuthError) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!("The signature is not valid: {e}."),
    )
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "The payload size is too big.",
    )
}

/// The body length a request announces in `Content-Length`, when it does.
fn announced_length(headers: &hyper::HeaderMap) -> Option<u64> {
    headers
        .get(hyper::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A 400 answer with `message`.
pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// Reads a request body of at most `limit` bytes, which must arrive within `timeout`.
async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    match read {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Could not read the body: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("The body did not arrive within {timeout:?}."),
        )),
    }
}

/// Answers a call to the API whose signature holds.
async fn signed_call(
    state: &State,
    method: &Method,
    request: ApiRequest,
    rest: &[String],
) -> Result<Response<Body>, ApiError> {
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let read_budget = if method == Method::GET {
        let per_second = request.app.max_read_req_per_sec;
        take_budget(state, &request.app, Budget::ReadRequests, 1, per_second).await?
    } else {
        None
    };
    let response = match (method, rest.as_slice()) {
        (&Method::POST, ["events"]) => publish(state, &request).await,
        (&Method::POST, ["batch_events"]) => publish_batch(state, &request).await,
        (&Method::GET, ["channels"]) => list_channels(state, &request).await,
        (&Method::GET, ["channels", channel]) => channel_info(state, &request, channel).await,
        (&Method::GET, ["channels", channel, "users"]) => {
            channel_users(state, &request, channel).await
        }
        (&Method::POST, ["users", user_id, "terminate_connections"]) => {
            state
                .adapter
                .terminate_user_connections(&request.app.id, user_id)
                .await?;
            Ok(json_response(&json!({})))
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "Not found.")),
    };
    response.map(|r| with_budget_headers(r, read_budget))
}

/// Takes `points` from an app's budget when the app has one; refuses with 429 when it is spent.
async fn take_budget(
    state: &State,
    app: &App,
    budget: Budget,
    points: u64,
    per_second: Option<u64>,
) -> Result<Option<Decision>, ApiError> {
    let Some(per_second) = per_second else {
        return Ok(None);
    };
    let decision = state
        .rate_limiter
        .consume(&app.id, budget, points, per_second)
        .await?;
    if decision.allowed {
        Ok(Some(decision))
    } else {
        Err(ApiError::too_many_requests(&decision))
    }
}

/// Adds soketi's `X-RateLimit-*` headers to a response that drew from a budget.
fn with_budget_headers(mut response: Response<Body>, decision: Option<Decision>) -> Response<Body> {
    if let Some(decision) = decision {
        crate::error::rate_limit_headers(response.headers_mut(), &decision);
    }
    response
}
