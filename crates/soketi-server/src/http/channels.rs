//! The channel queries of the HTTP API: `GET /channels`, `GET /channels/{name}` and
//! `GET /channels/{name}/users`, answered for the whole fleet through the adapter.

use super::*;

pub(super) async fn list_channels(
    state: &State,
    req: &ApiRequest,
) -> Result<Response<Body>, ApiError> {
    let prefix = req.param("filter_by_prefix").unwrap_or_default();
    let info = req.info();
    check_info(&info)?;
    let wants_users = info.iter().any(|i| i == "user_count");
    if wants_users && !prefix.starts_with("presence-") {
        return Err(bad_request(
            "info=user_count needs filter_by_prefix=presence-.",
        ));
    }
    let mut channels = state.adapter.channels(&req.app.id).await?;
    channels.retain(|(name, counts)| name.starts_with(prefix) && counts.subscription_count > 0);
    channels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(json_bytes(channels_json(channels, wants_users)))
}

/// `{"channels": {name: {subscription_count, user_count?}, …}}`, written straight into the
/// answer's bytes: an app with very many channels costs its answer and the list, not a tree of
/// JSON values as well.
fn channels_json(channels: Vec<(String, ChannelCounts)>, wants_users: bool) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(16 + channels.len() * 48);
    out.extend_from_slice(br#"{"channels":{"#);
    for (i, (name, counts)) in channels.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing to a Vec cannot fail, and a string always serializes.
        let _ = serde_json::to_writer(&mut out, &name);
        let _ = write!(
            out,
            r#":{{"subscription_count":{}"#,
            counts.subscription_count
        );
        if wants_users {
            let _ = write!(
                out,
                r#","user_count":{}"#,
                counts.user_count.unwrap_or_default()
            );
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}}");
    out
}

pub(super) async fn channel_info(
    state: &State,
    req: &ApiRequest,
    channel: &str,
) -> Result<Response<Body>, ApiError> {
    let parsed = req.channel(channel)?;
    let info = req.info();
    check_info(&info)?;
    if info.iter().any(|i| i == "user_count") && !parsed.is_presence() {
        return Err(bad_request(
            "user_count is only available for presence channels.",
        ));
    }
    let ChannelCounts {
        subscription_count,
        user_count,
    } = state.adapter.channel_counts(&req.app.id, channel).await?;
    let mut out = Map::new();
    out.insert("occupied".into(), (subscription_count > 0).into());
    out.insert("subscription_count".into(), subscription_count.into());
    if parsed.is_presence() {
        out.insert("user_count".into(), user_count.unwrap_or_default().into());
    }
    Ok(json_response(&Value::Object(out)))
}

pub(super) async fn channel_users(
    state: &State,
    req: &ApiRequest,
    channel: &str,
) -> Result<Response<Body>, ApiError> {
    let parsed = req.channel(channel)?;
    if !parsed.is_presence() {
        return Err(bad_request("The channel must be a presence channel."));
    }
    let members = state.adapter.presence_members(&req.app.id, channel).await?;
    let users: Vec<Value> = members.iter().map(|m| json!({ "id": m.user_id })).collect();
    Ok(json_response(&json!({ "users": users })))
}
