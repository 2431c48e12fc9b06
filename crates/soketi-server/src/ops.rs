//! The operations server: soketi's second port (9601 by default), kept off the public one so
//! that metrics need no authentication.
//!
//! Routes: `GET /` and `GET /ready` for probes, `GET /usage` for the machine's memory,
//! `GET /cluster` for the fleet as this node sees it, and `GET /metrics` (Prometheus text, or prom-client's JSON with `?json=1`) when metrics are
//! enabled. It serves until the end of shutdown, so that `/ready` can answer 503 while
//! connections drain.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::http::{json_response, text};
use crate::memory;
use crate::metrics;
use crate::state::State;

type Body = Full<Bytes>;

/// Accepts connections on the operations port until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed on the operations port");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let builder = crate::http::server_builder(&state.config);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let served = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "operations connection ended with an error");
            }
        });
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match route(&state, &req) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    Ok(response)
}

fn route(state: &State, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(not_found());
    }
    match req.uri().path() {
        "/" => Ok(text(StatusCode::OK, "OK")),
        "/ready" if state.is_closing() => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is closing.",
        )),
        "/ready" => Ok(text(StatusCode::OK, "OK")),
        "/usage" => usage(),
        "/metrics" => metrics(state, req.uri().query()),
        "/cluster" => Ok(cluster(state)),
        _ => Err(not_found()),
    }
}

/// This node's view of its fleet: its id, the master (for the cluster driver), its open
/// connections per app and the other live nodes, each with its connections per app as last
/// shared (what the fleet-wide connection quotas count).
fn cluster(state: &State) -> Response<Body> {
    let driver = state.config.adapter.driver.as_str();
    let Some(transport) = &state.transport else {
        return json_response(&json!({ "driver": driver, "node_id": null, "nodes": [] }));
    };
    let master = transport.master();
    let mut counts = state.adapter.peer_connections();
    let nodes: Vec<_> = transport
        .peers()
        .into_iter()
        .map(|peer| {
            let connections = counts.remove(&peer.node_id).unwrap_or_default();
            json!({
                "node_id": peer.node_id,
                "address": peer.address,
                "is_master": master.as_deref() == Some(peer.node_id.as_str()),
                "connections": connections,
            })
        })
        .collect();
    let registry = state.adapter.local();
    let connections: std::collections::BTreeMap<String, u64> = registry
        .app_ids()
        .into_iter()
        .filter_map(|app| {
            let count = registry.get_app(&app)?.connection_count();
            (count > 0).then_some((app, count))
        })
        .collect();
    json_response(&json!({
        "driver": driver,
        "node_id": transport.node_id(),
        "master_id": master,
        "is_master": master.as_deref() == Some(transport.node_id()),
        "connections": connections,
        "nodes": nodes,
    }))
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not found.")
}

/// The machine's memory, as soketi's `/usage` shapes it: bytes, and percent in use.
fn usage() -> Result<Response<Body>, ApiError> {
    let memory = memory::machine().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Could not read the memory usage: {e}."),
        )
    })?;
    Ok(json_response(&json!({
        "memory": {
            "free": memory.available,
            "used": memory.used(),
            "total": memory.total,
            "percent": memory.percent_used(),
        }
    })))
}

fn metrics(state: &State, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let metrics = &state.metrics;
    if !metrics.is_enabled() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Metrics are disabled; set metrics.enabled (SOKETI_METRICS_ENABLED=true).",
        ));
    }
    // soketi answers JSON for any non-empty `json` parameter.
    let wants_json = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "json" && !v.is_empty());
    if wants_json {
        return Ok(json_response(&metrics.to_json()));
    }
    let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    Ok(response)
}
