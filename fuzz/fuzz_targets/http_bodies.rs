//! The bodies of `POST /events` and `POST /batch_events`: any bytes, read and checked as the
//! HTTP API reads them (the first byte picks the endpoint), against an app with soketi's
//! limits. A body the API refuses gets a 4xx status, never a 5xx; one it accepts turns into one
//! frame per channel, each of them JSON. (JSON by its grammar: the data is passed on as it came,
//! and a number past f64's range is JSON all the same; JavaScript reads it as Infinity.)

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use soketi_protocol::App;
use soketi_server::fuzzing::publish_frames;

static APP: OnceLock<App> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let app = APP.get_or_init(|| App::new("app-id", "app-key", "app-secret"));
    match publish_frames(app, body, which % 2 == 1) {
        Ok(frames) => {
            for frame in frames {
                assert!(
                    serde_json::from_str::<Box<serde_json::value::RawValue>>(&frame).is_ok(),
                    "an accepted body made a frame that is not JSON: {frame}"
                );
            }
        }
        Err(status) => assert!(
            (400..500).contains(&status),
            "a body was refused with {status}"
        ),
    }
    let _ = soketi_protocol::http_auth::body_md5(body);
});
