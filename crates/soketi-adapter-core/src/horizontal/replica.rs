//! The replica: the presence members of the other nodes, by app and channel, each with the
//! nodes where the user is, so that presence answers need no round trip.

use std::collections::{HashMap, HashSet};

use serde_json::value::RawValue;
use soketi_protocol::message::PresenceMember;

/// A presence member seen on other nodes.
struct RemoteMember {
    info: Option<Box<RawValue>>,
    nodes: HashSet<String>,
}

/// Presence members of the other nodes, by app and channel.
#[derive(Default)]
pub(super) struct Replica {
    channels: HashMap<(String, String), HashMap<String, RemoteMember>>,
}

impl Replica {
    pub(super) fn add(&mut self, app: &str, channel: &str, node: &str, user: &str, info: &[u8]) {
        let members = self
            .channels
            .entry((app.to_owned(), channel.to_owned()))
            .or_default();
        let member = members
            .entry(user.to_owned())
            .or_insert_with(|| RemoteMember {
                info: None,
                nodes: HashSet::new(),
            });
        member.nodes.insert(node.to_owned());
        if !info.is_empty() {
            member.info = std::str::from_utf8(info)
                .ok()
                .and_then(|s| RawValue::from_string(s.to_owned()).ok());
        }
    }

    pub(super) fn remove(&mut self, app: &str, channel: &str, node: &str, user: &str) {
        let key = (app.to_owned(), channel.to_owned());
        if let Some(members) = self.channels.get_mut(&key) {
            if let Some(member) = members.get_mut(user) {
                member.nodes.remove(node);
                if member.nodes.is_empty() {
                    members.remove(user);
                }
            }
            if members.is_empty() {
                self.channels.remove(&key);
            }
        }
    }

    pub(super) fn has(&self, app: &str, channel: &str, user: &str) -> bool {
        self.channels
            .get(&(app.to_owned(), channel.to_owned()))
            .is_some_and(|m| m.contains_key(user))
    }

    /// How many users of the channel are on other nodes and not `here`.
    pub(super) fn count_not(&self, app: &str, channel: &str, here: impl Fn(&str) -> bool) -> usize {
        self.channels
            .get(&(app.to_owned(), channel.to_owned()))
            .map_or(0, |members| members.keys().filter(|u| !here(u)).count())
    }

    pub(super) fn members(&self, app: &str, channel: &str) -> Vec<PresenceMember> {
        self.channels
            .get(&(app.to_owned(), channel.to_owned()))
            .map(|members| {
                members
                    .iter()
                    .map(|(id, m)| PresenceMember {
                        user_id: id.clone(),
                        user_info: m.info.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops `node` everywhere; returns the (app, channel, user) left with no node.
    pub(super) fn drop_node(&mut self, node: &str) -> Vec<(String, String, String)> {
        let mut gone = Vec::new();
        self.channels.retain(|(app, channel), members| {
            members.retain(|user, member| {
                if member.nodes.remove(node) && member.nodes.is_empty() {
                    gone.push((app.clone(), channel.clone(), user.clone()));
                    false
                } else {
                    !member.nodes.is_empty()
                }
            });
            !members.is_empty()
        });
        gone
    }
}
