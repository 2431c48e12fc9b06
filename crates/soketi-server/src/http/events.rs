//! Publishing through the HTTP API: `POST /events` and `POST /batch_events`, their bodies'
//! validation against the app's limits, the budget they draw from, and the `info` answer.

use super::*;

/// One event to publish, as the HTTP API receives it.
#[derive(Deserialize)]
struct EventBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

/// An event that passed validation.
struct Event {
    name: String,
    data: Box<RawValue>,
    channels: Vec<String>,
    except: Option<SocketId>,
    info: Vec<String>,
}

fn validate(app: &App, body: EventBody) -> Result<Event, ApiError> {
    let limits = &app.limits;
    let name = body
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad_request("The event needs a name."))?;
    if name.len() > limits.max_event_name_length {
        return Err(bad_request(format!(
            "The event name may not be longer than {} characters.",
            limits.max_event_name_length
        )));
    }
    let data = body
        .data
        .ok_or_else(|| bad_request("The event needs data."))?;
    let channels = match (body.channels, body.channel) {
        (Some(channels), _) if !channels.is_empty() => channels,
        (_, Some(channel)) => vec![channel],
        _ => return Err(bad_request("The event needs a channel or channels.")),
    };
    if channels.len() > limits.max_event_channels_at_once {
        return Err(bad_request(format!(
            "An event may go to at most {} channels.",
            limits.max_event_channels_at_once
        )));
    }
    for channel in &channels {
        ChannelName::parse(channel, limits.max_channel_name_length)
            .map_err(|e| bad_request(format!("{e}.")))?;
    }
    if data_len(&data) > limits.max_event_payload_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The event data may not be larger than {} bytes.",
                limits.max_event_payload_bytes
            ),
        ));
    }
    let except = match body.socket_id {
        Some(id) => Some(SocketId::parse(&id).map_err(|e| bad_request(format!("{e}.")))?),
        None => None,
    };
    let info = parse_info(body.info.as_deref());
    check_info(&info)?;
    Ok(Event {
        name,
        data,
        channels,
        except,
        info,
    })
}

/// The size of an event's data as the limit counts it: the text of a string, else the JSON.
fn data_len(data: &RawValue) -> usize {
    match serde_json::from_str::<&str>(data.get()) {
        Ok(s) => s.len(),
        Err(_) => data.get().len(),
    }
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("The body is not valid: {e}.")))
}

async fn deliver(state: &State, app: &App, event: &Event) -> Result<(), ApiError> {
    for channel in &event.channels {
        let json = message::channel_event(&event.name, channel, &event.data, None);
        let parsed = ChannelName::classify(channel);
        if parsed.kind() == ChannelKind::ServerToUser {
            let user_id = parsed.server_to_user_id().unwrap_or_default();
            state
                .adapter
                .send_to_user(&app.id, user_id, Bytes::from(json))
                .await?;
        } else {
            state
                .adapter
                .publish(&app.id, channel, Bytes::from(json), event.except.as_ref())
                .await?;
        }
        state.console.emit(&app.id, "event", || {
            json!({
                "channel": channel,
                "event": event.name,
                "data": crate::console::excerpt(event.data.get()),
                "source": "api",
                "socket_id": event.except.as_ref().map(SocketId::as_str),
            })
        });
    }
    Ok(())
}

/// The counts an `info` parameter asks for, as Pusher shapes them.
async fn info_attributes(
    state: &State,
    app: &App,
    channel: &str,
    info: &[String],
) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    if info.is_empty() {
        return Ok(out);
    }
    let counts = state.adapter.channel_counts(&app.id, channel).await?;
    for attribute in info {
        match attribute.as_str() {
            "subscription_count" => {
                out.insert(attribute.clone(), counts.subscription_count.into());
            }
            "user_count" if ChannelName::classify(channel).is_presence() => {
                out.insert(
                    attribute.clone(),
                    counts.user_count.unwrap_or_default().into(),
                );
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Takes an app's backend budget for `events`: one point per event and channel, as soketi.
async fn take_backend_budget(
    state: &State,
    app: &App,
    events: &[Event],
) -> Result<Option<Decision>, ApiError> {
    let points = events.iter().map(|e| e.channels.len() as u64).sum();
    let per_second = app.max_backend_events_per_sec;
    take_budget(state, app, Budget::BackendEvents, points, per_second).await
}

/// Reads and checks the body of `POST /events`.
fn parse_event(app: &App, body: &[u8]) -> Result<Event, ApiError> {
    validate(app, parse_json(body)?)
}

/// Reads and checks the body of `POST /batch_events`: every event is checked before any is
/// sent, since a batch is all or nothing.
fn parse_batch(app: &App, body: &[u8]) -> Result<Vec<Event>, ApiError> {
    let body: BatchBody = parse_json(body)?;
    let max = app.limits.max_event_batch_size;
    if body.batch.len() > max {
        return Err(bad_request(format!(
            "A batch may hold at most {max} events."
        )));
    }
    body.batch.into_iter().map(|e| validate(app, e)).collect()
}

/// The frames an HTTP API body turns into, one per channel, as [`deliver`] builds them; for
/// the fuzz target of the HTTP API's bodies.
pub(crate) fn frames_of(app: &App, body: &[u8], batch: bool) -> Result<Vec<String>, ApiError> {
    let events = if batch {
        parse_batch(app, body)?
    } else {
        vec![parse_event(app, body)?]
    };
    Ok(events
        .iter()
        .flat_map(|event| {
            event
                .channels
                .iter()
                .map(|channel| message::channel_event(&event.name, channel, &event.data, None))
        })
        .collect())
}

pub(super) async fn publish(state: &State, req: &ApiRequest) -> Result<Response<Body>, ApiError> {
    let event = parse_event(&req.app, &req.body)?;
    let budget = take_backend_budget(state, &req.app, std::slice::from_ref(&event)).await?;
    deliver(state, &req.app, &event).await?;
    Ok(with_budget_headers(
        publish_answer(state, req, &event).await?,
        budget,
    ))
}

async fn publish_answer(
    state: &State,
    req: &ApiRequest,
    event: &Event,
) -> Result<Response<Body>, ApiError> {
    if event.info.is_empty() {
        return Ok(json_response(&json!({})));
    }
    let mut channels = Map::new();
    for channel in &event.channels {
        let attributes = info_attributes(state, &req.app, channel, &event.info).await?;
        channels.insert(channel.clone(), Value::Object(attributes));
    }
    Ok(json_response(&json!({ "channels": channels })))
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

pub(super) async fn publish_batch(
    state: &State,
    req: &ApiRequest,
) -> Result<Response<Body>, ApiError> {
    let events = parse_batch(&req.app, &req.body)?;
    let budget = take_backend_budget(state, &req.app, &events).await?;
    for event in &events {
        deliver(state, &req.app, event).await?;
    }
    Ok(with_budget_headers(
        batch_answer(state, req, &events).await?,
        budget,
    ))
}

async fn batch_answer(
    state: &State,
    req: &ApiRequest,
    events: &[Event],
) -> Result<Response<Body>, ApiError> {
    if events.iter().all(|e| e.info.is_empty()) {
        return Ok(json_response(&json!({})));
    }
    let mut batch = Vec::with_capacity(events.len());
    for event in events {
        let channel = event
            .channels
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let attributes = info_attributes(state, &req.app, channel, &event.info).await?;
        batch.push(Value::Object(attributes));
    }
    Ok(json_response(&json!({ "batch": batch })))
}
