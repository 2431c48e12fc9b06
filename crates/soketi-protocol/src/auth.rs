//! Signatures that clients obtain from the app's auth endpoint: channel authorization for
//! private, presence and encrypted channels, and user authentication for `pusher:signin`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::ProtocolError;

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `message` with `secret`.
pub fn hmac_sha256_hex(secret: &str, message: &[u8]) -> String {
    hex::encode(hmac_sha256(secret, message))
}

fn hmac_sha256(secret: &str, message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac accepts keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The string a channel authorization signs: `socket_id:channel` or, for presence,
/// `socket_id:channel:channel_data`.
pub fn channel_string_to_sign(
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string a user authentication signs: `socket_id::user::user_data`.
pub fn user_string_to_sign(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// The `auth` value a client sends: `key:hex-signature`.
pub fn sign(key: &str, secret: &str, string_to_sign: &str) -> String {
    format!(
        "{key}:{}",
        hmac_sha256_hex(secret, string_to_sign.as_bytes())
    )
}

/// Checks an `auth` value of the form `key:hex-signature` in constant time.
pub fn verify(
    auth: &str,
    key: &str,
    secret: &str,
    string_to_sign: &str,
) -> Result<(), ProtocolError> {
    let (given_key, signature) = auth
        .split_once(':')
        .ok_or(ProtocolError::InvalidSignature)?;
    if given_key != key {
        return Err(ProtocolError::InvalidSignature);
    }
    verify_hex(signature, secret, string_to_sign.as_bytes())
}

/// Compares a hex signature with the HMAC of `message`, in constant time.
pub fn verify_hex(signature_hex: &str, secret: &str, message: &[u8]) -> Result<(), ProtocolError> {
    let given = hex::decode(signature_hex).map_err(|_| ProtocolError::InvalidSignature)?;
    let expected = hmac_sha256(secret, message);
    if given.len() == expected.len() && bool::from(given.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(ProtocolError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests;
