//! The relay: a publish, a message to a user or a termination is carried out on this node
//! first, then sent to the others in one envelope, which each carries out for its own
//! connections.

use bytes::Bytes;
use soketi_protocol::SocketId;

use super::HorizontalAdapter;
use crate::AdapterError;
use crate::local::Origin;
use crate::wire::v1;

impl HorizontalAdapter {
    /// Delivers to this node's subscribers of `channel`, then to the other nodes'.
    pub(super) async fn relay_publish(
        &self,
        app_id: &str,
        channel: &str,
        message: Bytes,
        except: Option<&SocketId>,
    ) -> Result<(), AdapterError> {
        self.local
            .deliver(app_id, channel, &message, except, Origin::ThisNode)
            .await;
        let body = v1::envelope::Body::Broadcast(v1::Broadcast {
            channel: channel.to_owned(),
            message: message.to_vec(),
            except_socket_id: except.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        });
        self.tell_others(app_id, body).await
    }

    /// Delivers to this node's connections of `user_id`, then to the other nodes'.
    pub(super) async fn relay_to_user(
        &self,
        app_id: &str,
        user_id: &str,
        message: Bytes,
    ) -> Result<(), AdapterError> {
        self.local.deliver_to_user(app_id, user_id, &message);
        let body = v1::envelope::Body::SendToUser(v1::SendToUser {
            user_id: user_id.to_owned(),
            message: message.to_vec(),
        });
        self.tell_others(app_id, body).await
    }

    /// Closes this node's connections of `user_id`, then the other nodes'.
    pub(super) async fn relay_terminate_user(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<(), AdapterError> {
        self.local.terminate_local(app_id, user_id);
        let body = v1::envelope::Body::TerminateUser(v1::TerminateUser {
            user_id: user_id.to_owned(),
        });
        self.tell_others(app_id, body).await
    }

    /// Another node's publish, for this node's subscribers.
    pub(super) async fn on_broadcast(&self, app: &str, b: v1::Broadcast) {
        let except = (!b.except_socket_id.is_empty())
            .then(|| SocketId::parse(&b.except_socket_id).ok())
            .flatten();
        self.local
            .deliver(
                app,
                &b.channel,
                &b.message,
                except.as_ref(),
                Origin::OtherNode,
            )
            .await;
    }

    /// Another node's message to a user, for this node's connections of the user.
    pub(super) fn on_send_to_user(&self, app: &str, s: v1::SendToUser) {
        self.local.deliver_to_user(app, &s.user_id, &s.message);
    }

    /// Another node's termination of a user, for this node's connections of the user.
    pub(super) fn on_terminate_user(&self, app: &str, t: v1::TerminateUser) {
        self.local.terminate_local(app, &t.user_id);
    }
}
