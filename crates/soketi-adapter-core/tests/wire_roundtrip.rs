//! Every envelope a node writes reads back the same on the other side.

use proptest::prelude::*;
use prost::Message as _;
use soketi_adapter_core::wire::{VERSION, v1};

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..256)
}

fn member() -> impl Strategy<Value = v1::Member> {
    (text(), bytes()).prop_map(|(user_id, user_info)| v1::Member { user_id, user_info })
}

fn body() -> impl Strategy<Value = v1::envelope::Body> {
    use v1::envelope::Body;
    prop_oneof![
        (text(), bytes(), text()).prop_map(|(channel, message, except_socket_id)| {
            Body::Broadcast(v1::Broadcast {
                channel,
                message,
                except_socket_id,
            })
        }),
        (text(), bytes())
            .prop_map(|(user_id, message)| Body::SendToUser(v1::SendToUser { user_id, message })),
        text().prop_map(|user_id| Body::TerminateUser(v1::TerminateUser { user_id })),
        (text(), text(), bytes(), any::<bool>()).prop_map(
            |(channel, user_id, user_info, present)| {
                Body::PresenceChange(v1::PresenceChange {
                    channel,
                    user_id,
                    user_info,
                    present,
                })
            }
        ),
        proptest::collection::vec(
            (text(), text(), proptest::collection::vec(member(), 0..4)),
            0..4
        )
        .prop_map(|channels| {
            Body::PresenceSnapshot(v1::PresenceSnapshot {
                channels: channels
                    .into_iter()
                    .map(|(app_id, channel, members)| v1::PresenceMembers {
                        app_id,
                        channel,
                        members,
                    })
                    .collect(),
                occupied: Vec::new(),
                connections: Vec::new(),
                subscriptions: Vec::new(),
            })
        }),
        (text(), bytes())
            .prop_map(|(kind, payload)| Body::Extension(v1::Extension { kind, payload })),
        (text(), any::<bool>()).prop_map(|(channel, occupied)| {
            Body::OccupancyChange(v1::OccupancyChange { channel, occupied })
        }),
        (
            proptest::collection::vec((text(), any::<u64>()), 0..4),
            any::<bool>()
        )
            .prop_map(|(apps, full)| {
                Body::ConnectionCounts(v1::ConnectionCounts {
                    apps: apps
                        .into_iter()
                        .map(|(app_id, connections)| v1::AppConnections {
                            app_id,
                            connections,
                        })
                        .collect(),
                    full,
                })
            }),
    ]
}

proptest! {
    #[test]
    fn envelopes_read_back(node_id in text(), app_id in text(), body in proptest::option::of(body())) {
        let envelope = v1::Envelope {
            version: VERSION,
            node_id,
            app_id,
            body,
        };
        let bytes = envelope.encode_to_vec();
        prop_assert_eq!(v1::Envelope::decode(&bytes[..]).expect("what it wrote"), envelope);
    }
}
