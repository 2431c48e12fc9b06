use super::*;

// The key and secret of the worked examples in Pusher's documentation.
const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";

#[test]
fn private_channel_vector_from_pusher_docs() {
    let to_sign = channel_string_to_sign("1234.1234", "private-foobar", None);
    let auth = sign(KEY, SECRET, &to_sign);
    assert_eq!(
        auth,
        "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    );
    assert_eq!(verify(&auth, KEY, SECRET, &to_sign), Ok(()));
}

#[test]
fn presence_channel_signs_channel_data() {
    // Cross-checked with Node's crypto.createHmac, an independent implementation.
    let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
    let to_sign = channel_string_to_sign("1234.1234", "presence-foobar", Some(data));
    assert_eq!(
        sign(KEY, SECRET, &to_sign),
        "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
    );
}

#[test]
fn user_authentication_string() {
    assert_eq!(
        user_string_to_sign("1.2", r#"{"id":"u"}"#),
        r#"1.2::user::{"id":"u"}"#
    );
}

#[test]
fn rejects_bad_auth_strings() {
    let to_sign = channel_string_to_sign("1234.1234", "private-foobar", None);
    let good = sign(KEY, SECRET, &to_sign);
    let sig = good.split_once(':').unwrap().1;
    for bad in [
        String::new(),
        "nocolon".to_owned(),
        format!("otherkey:{sig}"),
        format!("{KEY}:"),
        format!("{KEY}:zz{}", &sig[2..]),
        format!("{KEY}:{}", &sig[..10]),
        format!("{KEY}:{}0", &sig[..63]),
    ] {
        assert_eq!(
            verify(&bad, KEY, SECRET, &to_sign),
            Err(ProtocolError::InvalidSignature),
            "{bad:?}"
        );
    }
    assert!(verify(&good, KEY, "wrong-secret", &to_sign).is_err());
}
