//! Queries of the HTTP API: a request fans out to every live node, which answers for its own
//! connections, and the answers merge with this node's. A query stops at the last answer, or
//! after the requests timeout with a partial answer and a warning. Each request, answer and
//! outcome is counted in the [`RequestMetrics`](crate::RequestMetrics) the server set, as
//! soketi counts them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::Mutex;
use soketi_channels::ChannelCounts;
use soketi_protocol::{ChannelName, SocketId};
use tokio::sync::Notify;

use super::HorizontalAdapter;
use crate::wire::v1;
use crate::{Adapter, AdapterError};

/// A request waiting for the other nodes' answers.
pub(super) struct Pending {
    /// The app the request is about, which its metrics are labelled with.
    app_id: String,
    awaited: Mutex<HashSet<String>>,
    answers: Mutex<Vec<v1::response::Answer>>,
    done: Notify,
}

impl Pending {
    /// Counts `node` as answered, with its answer if it gave one (not when it left).
    /// Returns whether `node` was still awaited.
    pub(super) fn settle(&self, node: &str, answer: Option<v1::response::Answer>) -> bool {
        let mut awaited = self.awaited.lock();
        let was_awaited = awaited.remove(node);
        if was_awaited {
            if let Some(answer) = answer {
                self.answers.lock().push(answer);
            }
            if awaited.is_empty() {
                self.done.notify_one();
            }
        }
        was_awaited
    }
}

impl HorizontalAdapter {
    /// Every occupied channel of the app in the fleet, with its counts.
    pub(super) async fn fleet_channels(
        &self,
        app_id: &str,
    ) -> Result<Vec<(String, ChannelCounts)>, AdapterError> {
        let mut counts: HashMap<String, u64> = self
            .local
            .channels(app_id)
            .await?
            .into_iter()
            .map(|(name, c)| (name, c.subscription_count))
            .collect();
        for answer in self
            .ask(app_id, v1::request::Query::Channels(v1::Empty {}))
            .await
        {
            if let v1::response::Answer::Channels(list) = answer {
                for c in list.channels {
                    *counts.entry(c.channel).or_default() += c.subscription_count;
                }
            }
        }
        Ok(counts
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, subscription_count)| {
                let user_count = ChannelName::classify(&name)
                    .is_presence()
                    .then(|| self.merged_members(app_id, &name).len() as u64);
                (
                    name,
                    ChannelCounts {
                        subscription_count,
                        user_count,
                    },
                )
            })
            .collect())
    }

    /// One channel's counts in the fleet.
    pub(super) async fn fleet_channel_counts(
        &self,
        app_id: &str,
        channel: &str,
    ) -> Result<ChannelCounts, AdapterError> {
        let mut subscription_count = self
            .local
            .channel_counts(app_id, channel)
            .await?
            .subscription_count;
        let query = v1::request::Query::ChannelCounts(channel.to_owned());
        for answer in self.ask(app_id, query).await {
            if let v1::response::Answer::ChannelCounts(c) = answer {
                subscription_count += c.subscription_count;
            }
        }
        let user_count = ChannelName::classify(channel)
            .is_presence()
            .then(|| self.merged_members(app_id, channel).len() as u64);
        Ok(ChannelCounts {
            subscription_count,
            user_count,
        })
    }

    /// The app's open connections in the fleet.
    pub(super) async fn fleet_socket_count(&self, app_id: &str) -> Result<u64, AdapterError> {
        let mut count = self.local.socket_count(app_id).await?;
        for answer in self
            .ask(app_id, v1::request::Query::SocketCount(v1::Empty {}))
            .await
        {
            if let v1::response::Answer::SocketCount(n) = answer {
                count += n;
            }
        }
        Ok(count)
    }

    /// Another node's answer to one of this node's requests.
    pub(super) fn on_response(&self, from: &str, response: v1::Response) {
        if let Some(pending) = self.pending.get(&response.request_id).map(|p| p.clone()) {
            // A node answers once; an answer from a node that was not asked, or a second one,
            // is no response to count.
            if pending.settle(from, response.answer)
                && let Some(metrics) = self.request_metrics()
            {
                metrics.response_received(&pending.app_id);
            }
        }
    }

    /// Answers another node's request for this node's connections.
    pub(super) async fn answer(&self, from: &str, app: &str, request: v1::Request) {
        use v1::request::Query;
        use v1::response::Answer;
        let Some(query) = request.query else {
            return;
        };
        let local = self.local.local().get_app(app);
        let answer = match query {
            Query::Channels(_) => Answer::Channels(v1::ChannelList {
                channels: local
                    .map(|a| a.channels())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(channel, counts)| v1::ChannelCount {
                        channel,
                        subscription_count: counts.subscription_count,
                    })
                    .collect(),
            }),
            Query::ChannelCounts(channel) => Answer::ChannelCounts(v1::ChannelCount {
                subscription_count: local
                    .map(|a| a.channel_counts(&channel).subscription_count)
                    .unwrap_or_default(),
                channel,
            }),
            Query::SocketCount(_) => {
                Answer::SocketCount(local.map(|a| a.connection_count()).unwrap_or_default())
            }
            Query::SocketInChannel(q) => Answer::SocketInChannel(
                SocketId::parse(&q.socket_id)
                    .is_ok_and(|id| local.is_some_and(|a| a.is_subscribed(&q.channel, &id))),
            ),
            Query::UserConnections(user) => {
                Answer::UserConnections(local.map_or(0, |a| a.user_connection_count(&user) as u64))
            }
        };
        let response = self.envelope(
            app,
            v1::envelope::Body::Response(v1::Response {
                request_id: request.request_id,
                answer: Some(answer),
            }),
        );
        match self.transport.send_to(from, response).await {
            Ok(()) => {
                if let Some(metrics) = self.request_metrics() {
                    metrics.request_received(app);
                }
            }
            Err(e) => tracing::warn!(node = from, error = %e, "could not answer a request"),
        }
    }

    /// Where requests are counted, when the server has said.
    fn request_metrics(&self) -> Option<Arc<dyn crate::RequestMetrics>> {
        self.request_metrics.read().clone()
    }

    /// Asks every live node and returns their answers; partial after the timeout.
    async fn ask(&self, app_id: &str, query: v1::request::Query) -> Vec<v1::response::Answer> {
        let nodes: HashSet<String> = self.transport.live_nodes().into_iter().collect();
        if nodes.is_empty() {
            return Vec::new();
        }
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(Pending {
            app_id: app_id.to_owned(),
            awaited: Mutex::new(nodes.clone()),
            answers: Mutex::default(),
            done: Notify::new(),
        });
        self.pending.insert(request_id, pending.clone());
        let body = v1::envelope::Body::Request(v1::Request {
            request_id,
            query: Some(query),
        });
        let metrics = self.request_metrics();
        let started = Instant::now();
        let sent = self.tell_others(app_id, body).await;
        let finished = match sent {
            Ok(()) => {
                if let Some(metrics) = &metrics {
                    metrics.request_sent(app_id);
                }
                let finished = tokio::time::timeout(self.requests_timeout, pending.done.notified())
                    .await
                    .is_ok();
                if let Some(metrics) = &metrics {
                    metrics.request_resolved(app_id, finished, started.elapsed());
                }
                finished
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not ask the other nodes; answering for this node");
                false
            }
        };
        self.pending.remove(&request_id);
        if !finished {
            let missing = pending.awaited.lock().len();
            tracing::warn!(
                missing,
                asked = nodes.len(),
                "some nodes did not answer in time; the answer is partial"
            );
        }
        std::mem::take(&mut *pending.answers.lock())
    }
}
