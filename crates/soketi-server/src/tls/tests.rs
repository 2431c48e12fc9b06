//! Keys as `openssl` writes them: a throwaway P-256 key in the clear, the same key encrypted
//! with the passphrase `correct-horse` (PBES2: PBKDF2 with HMAC-SHA256 and AES-256-CBC, the
//! default of `openssl pkcs8 -topk8`; and scrypt), and in OpenSSL's legacy encrypted form.

use super::*;

const PLAIN: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3ij8+mmD5GxSfGWj
AUzHuCnxApeuvF1ymmxn8ZQLMI+hRANCAAQonrRdfETIfr2OFwpDpwSi9bFMlp04
THLEtrcuXwCUGtrZM0fl56wkgrRj6gy+mzoUKT4K0YAkFnt+Rbtamo0h
-----END PRIVATE KEY-----
";

const PBKDF2: &str = r"-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgVPnGNR/MH8wICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEEkQ1cvOjx15Q7sJuEUWdikEgZAA
xQmLDwCQrKDzYIHFgE/TLRIxQ7B428lSSbLwujp494z/dToHrvSTKeJgvwBaT9iM
/CuYIU/iYJ1esOBlt+c4v6OPsual3tH3Xb+1alX9DZFl8CwGvcWfCC3H9wrhKXzH
BCDUyzvllcC3tKkiITCwrVM7pAT6EivPZOEno12Zg4dxlrSciCqGwRp/iNJ0sjQ=
-----END ENCRYPTED PRIVATE KEY-----
";

const SCRYPT: &str = r"-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHkME8GCSqGSIb3DQEFDTBCMCEGCSsGAQQB2kcECzAUBAh9Fyw/iILVqAICQAAC
AQgCAQEwHQYJYIZIAWUDBAEqBBDOgNNooOOzCtT7hz+YZ/uPBIGQW/dVvVV9/IwQ
NLORqLg5bLVTa58xSTXRWP28Z2cL4kMcFwFQGOsrY0C5kC8cxOuDQEwQW2DAIY5b
igxHYj8vG8DlKTHEkmDqqrjvtu7qZRehDZizsU7KMqamO68oFwcxhieaBOK7T0GS
FuY5Sjlqa55KL0C/4HNiVq9jxA43vgR5xkysJqqDqsyx1MOW/TSC
-----END ENCRYPTED PRIVATE KEY-----
";

const LEGACY: &str = r"-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-256-CBC,7CED8290B4D85DC59302960D2CD3E393

9SjcdK6RAjTyQ70oSnRbBNjBEuQXuoXfScGW38BM3dzNH9IlwwnMby9+x5zJSlh7
1rBo/bBzGVP7NIIeq0BuRhfd5PHErArmpVo11pBUfnCx2D9sC6GJB5chs7MD7Y+5
pxU+bpbiiiewvTCDUACBPmcn4pOI1J5CqCctD+WSdPA=
-----END EC PRIVATE KEY-----
";

/// Writes `pem` to a file and reads it back as a key with `passphrase`.
fn check(pem: &str, passphrase: &str) -> Result<PrivateKeyDer<'static>, String> {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), pem).expect("written");
    read_key(&file.path().display().to_string(), passphrase).map_err(|e| e.to_string())
}

#[test]
fn an_encrypted_pkcs8_key_opens_with_its_passphrase() {
    let plain = check(PLAIN, "").expect("the clear key");
    for encrypted in [PBKDF2, SCRYPT] {
        let key = check(encrypted, "correct-horse").expect("decrypted");
        assert_eq!(key.secret_der(), plain.secret_der());
    }
}

#[test]
fn a_wrong_or_missing_passphrase_names_ssl_pass() {
    let wrong = check(PBKDF2, "battery-staple").unwrap_err();
    assert!(
        wrong.contains("SOKETI_SSL_PASS") && wrong.contains("does not decrypt"),
        "{wrong}"
    );
    let missing = check(PBKDF2, "").unwrap_err();
    assert!(
        missing.contains("SOKETI_SSL_PASS") && missing.contains("encrypted"),
        "{missing}"
    );
}

#[test]
fn a_passphrase_for_a_clear_key_is_ignored_and_a_legacy_key_says_how_to_convert() {
    assert!(check(PLAIN, "unused").is_ok());
    let legacy = check(LEGACY, "x").unwrap_err();
    assert!(legacy.contains("openssl pkcs8 -topk8"), "{legacy}");
}
