//! Client messages as the session reads them: the envelope, then the data of each event it
//! acts on (subscribe, unsubscribe, sign-in), presence channel data and sign-in user data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use soketi_protocol::message::{
    self, ClientMessage, PresenceMember, SigninData, SubscribeData, UnsubscribeData,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = ClientMessage::parse(text) {
        if let Ok(subscribe) = msg.data_as::<SubscribeData>()
            && let Some(channel_data) = subscribe.channel_data.as_deref()
            && let Ok(member) = PresenceMember::from_channel_data(channel_data)
        {
            let _ = member.info_size();
            let _ = message::presence_subscription_succeeded(&subscribe.channel, &[member]);
        }
        let _ = msg.data_as::<UnsubscribeData>();
        if let Ok(signin) = msg.data_as::<SigninData>() {
            let _ = message::user_id_from_user_data(&signin.user_data);
        }
    }
    let _ = PresenceMember::from_channel_data(text);
    let _ = message::user_id_from_user_data(text);
});
