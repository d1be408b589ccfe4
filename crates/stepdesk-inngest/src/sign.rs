//! `X-Inngest-Signature` and the signing-key Bearer token (protocol §1.3, §7 point 1).
//!
//! - Signature: `t=<unix secs>&s=<hex HMAC-SHA256>`, keyed with the signing key minus its
//!   `signkey-<env>-` prefix, used as TEXT (not hex-decoded), over `body ‖ decimal(t)`.
//!   A request is signed over the JCS bytes it is sent as; a verifier re-canonicalises the
//!   parsed body (an empty body signs as the empty string), and accepts ±5 minutes.
//!   Responses are signed over their raw bytes. Captures: `js/70`–`js/81` (cloud mode,
//!   key `signkey-test-12345678…`: every captured signature is checked in the tests),
//!   `py/70`–`py/74`.
//! - Bearer (SDK → server calls): `signkey-<env>-` + hex(SHA-256(hex-decoded key)); a
//!   server accepts the plain key or that hash, with or without the prefix (Python sends
//!   the bare hash: capture `py/73_cloud_put_unsigned`).

use std::borrow::Cow;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// How far a signature's timestamp may be from now, either way.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the request is not signed (no X-Inngest-Signature)")]
    Missing,
    #[error("malformed X-Inngest-Signature `{0}`: expected t=<unix seconds>&s=<hex>")]
    Malformed(String),
    #[error("the signature's time {t} is more than 5 minutes away from now ({now})")]
    Expired { t: i64, now: i64 },
    #[error("the signature does not match the signing key")]
    Mismatch,
    #[error("no signing key to check the signature with")]
    NoKey,
    #[error("the signing key is not hexadecimal after its signkey-<env>- prefix")]
    KeyNotHex,
}

/// The `signkey-<env>-` prefix of `key` (`signkey-prod-`), or `""`.
pub fn key_prefix(key: &str) -> &str {
    let Some(rest) = key.strip_prefix("signkey-") else {
        return "";
    };
    let env_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if env_len > 0 && rest[env_len..].starts_with('-') {
        &key[.."signkey-".len() + env_len + 1]
    } else {
        ""
    }
}

/// `key` without its `signkey-<env>-` prefix.
pub fn strip_prefix(key: &str) -> &str {
    &key[key_prefix(key).len()..]
}

fn mac(key: &str, body: &[u8], t: i64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(strip_prefix(key).as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    mac.update(t.to_string().as_bytes());
    mac
}

/// The hex HMAC of `body ‖ t` under `key`.
pub fn signature(body: &[u8], key: &str, unix_secs: i64) -> String {
    hex::encode(mac(key, body, unix_secs).finalize().into_bytes())
}

/// The `X-Inngest-Signature` value for `body` (send the exact bytes signed: JCS for a call
/// request, the raw body for a response).
pub fn signature_header(body: &[u8], key: &str, unix_secs: i64) -> String {
    format!("t={unix_secs}&s={}", signature(body, key, unix_secs))
}

/// Splits a header into its time and hex signature.
pub fn parse_header(header: &str) -> Result<(i64, String), SignError> {
    let header = header.trim();
    if header.is_empty() {
        return Err(SignError::Missing);
    }
    let malformed = || SignError::Malformed(header.to_string());
    let (mut t, mut s) = (None, None);
    for pair in header.split('&') {
        match pair.split_once('=') {
            Some(("t", v)) => t = Some(v.trim().parse::<i64>().map_err(|_| malformed())?),
            Some(("s", v)) => s = Some(v.trim().to_string()),
            _ => {}
        }
    }
    match (t, s) {
        (Some(t), Some(s)) if !s.is_empty() => Ok((t, s)),
        _ => Err(malformed()),
    }
}

/// The bytes a request body is verified over, as the SDKs do it: an empty body is the empty
/// string, a JSON body is re-canonicalised (JCS), anything else is taken as is.
pub fn verified_bytes(body: &[u8]) -> Cow<'_, [u8]> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Cow::Borrowed(&[]);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => Cow::Owned(crate::jcs::canonical(&v)),
        Err(_) => Cow::Borrowed(body),
    }
}

/// Checks a request's `X-Inngest-Signature` against `keys` (the signing key, then the
/// fallback), at `now_secs`. Returns the index of the key that matched: sign the response
/// with that one.
pub fn verify(header: &str, body: &[u8], keys: &[&str], now_secs: i64) -> Result<usize, SignError> {
    let keys: Vec<&str> = keys.iter().copied().filter(|k| !k.is_empty()).collect();
    if keys.is_empty() {
        return Err(SignError::NoKey);
    }
    let (t, s) = parse_header(header)?;
    if (now_secs - t).abs() > MAX_SKEW_SECS {
        return Err(SignError::Expired { t, now: now_secs });
    }
    let expected = hex::decode(&s).map_err(|_| SignError::Malformed(header.trim().to_string()))?;
    let message = verified_bytes(body);
    keys.iter()
        .position(|key| mac(key, &message, t).verify_slice(&expected).is_ok())
        .ok_or(SignError::Mismatch)
}

fn hash_hex_key(stripped: &str) -> Result<String, SignError> {
    let raw = hex::decode(stripped).map_err(|_| SignError::KeyNotHex)?;
    Ok(hex::encode(Sha256::digest(&raw)))
}

/// The token to send as `Authorization: Bearer <token>`: the key's prefix, then the hex
/// SHA-256 of the hex-decoded rest (`signkey-prod-12345678` →
/// `signkey-prod-b2ed9921…916c`).
pub fn bearer(key: &str) -> Result<String, SignError> {
    Ok(format!(
        "{}{}",
        key_prefix(key),
        hash_hex_key(strip_prefix(key))?
    ))
}

/// Whether a presented Bearer token (with or without `Bearer `) is `key`, plainly or hashed,
/// with or without the `signkey-<env>-` prefix.
pub fn matches_bearer(presented: &str, key: &str) -> bool {
    let presented = presented.trim();
    let token = presented
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("bearer "))
        .map(|_| presented[7..].trim())
        .unwrap_or(presented);
    let token = strip_prefix(token);
    let plain = strip_prefix(key);
    if token.is_empty() || plain.is_empty() {
        return false;
    }
    let hashed = hash_hex_key(plain).ok();
    let plain_ok = ct_eq(token.as_bytes(), plain.as_bytes());
    let hashed_ok =
        hashed.is_some_and(|h| ct_eq(token.to_ascii_lowercase().as_bytes(), h.as_bytes()));
    plain_ok | hashed_ok
}

/// Constant-time equality for secrets (a few lines; not worth a dependency). The length is
/// not secret: both sides are fixed-format keys.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The key the cloud-mode captures were made with (their `notes.signing_key_used`).
    const KEY: &str =
        "signkey-test-1234567812345678123456781234567812345678123456781234567812345678";

    struct Exchange {
        req_header: Option<String>,
        req_body: String,
        resp_header: Option<String>,
        resp_body: String,
        status: u64,
    }

    fn exchange(capture: &str) -> Exchange {
        let c: Value = serde_json::from_str(capture).unwrap();
        if let Some(key) = c["notes"].get("signing_key_used") {
            assert_eq!(key, KEY);
        }
        let header = |headers: &Value| {
            let pairs: Vec<(String, String)> = match headers {
                Value::Object(o) => o
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                Value::Array(a) => a
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().to_string(),
                            p[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect(),
                _ => vec![],
            };
            pairs
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-inngest-signature"))
                .map(|(_, v)| v)
        };
        Exchange {
            req_header: header(&c["request"]["headers"]),
            req_body: c["request"]["body_raw"].as_str().unwrap().to_string(),
            resp_header: header(&c["response"]["headers"]),
            resp_body: c["response"]["body_raw"].as_str().unwrap().to_string(),
            status: c["response"]["status"].as_u64().unwrap(),
        }
    }

    fn t_of(header: &str) -> i64 {
        parse_header(header).unwrap().0
    }

    /// Every captured exchange the SDK accepted verifies; the SDK's response signature is
    /// reproduced byte for byte.
    #[test]
    fn verifies_the_captured_signatures_the_sdks_accepted() {
        for capture in [
            include_str!("../tests/fixtures/js/71_cloud_get_signed.json"),
            include_str!("../tests/fixtures/js/72_cloud_post_signed_canonical.json"),
            include_str!(
                "../tests/fixtures/js/74_cloud_post_raw_noncanonical_signed_canonical.json"
            ),
            include_str!("../tests/fixtures/js/79_cloud_put_in_band_signed.json"),
            include_str!("../tests/fixtures/js/81_cloud_trust_probe_signed.json"),
            include_str!("../tests/fixtures/py/70_cloud_post_signed.json"),
            include_str!("../tests/fixtures/py/74_cloud_put_in_band_signed.json"),
        ] {
            let x = exchange(capture);
            let req = x.req_header.unwrap();
            let t = t_of(&req);
            assert_eq!(verify(&req, x.req_body.as_bytes(), &[KEY], t + 10), Ok(0));
            // With the key as fallback behind a wrong one.
            assert_eq!(
                verify(&req, x.req_body.as_bytes(), &["signkey-test-00", KEY], t),
                Ok(1)
            );
            let resp = x.resp_header.unwrap();
            assert_eq!(
                signature_header(x.resp_body.as_bytes(), KEY, t_of(&resp)),
                resp
            );
        }
    }

    #[test]
    fn a_request_body_is_signed_over_its_canonical_bytes() {
        // js/72: the request was sent canonical, so signing its raw bytes gives its header.
        let x = exchange(include_str!(
            "../tests/fixtures/js/72_cloud_post_signed_canonical.json"
        ));
        let req = x.req_header.unwrap();
        assert_eq!(
            signature_header(x.req_body.as_bytes(), KEY, t_of(&req)),
            req
        );
        // js/71: a GET is signed over the empty string.
        let x = exchange(include_str!(
            "../tests/fixtures/js/71_cloud_get_signed.json"
        ));
        let req = x.req_header.unwrap();
        assert_eq!(signature_header(b"", KEY, t_of(&req)), req);
    }

    #[test]
    fn rejects_what_the_sdks_rejected() {
        // js/73: signed over non-canonical raw bytes; the SDK answered 401, and so do we.
        let x = exchange(include_str!(
            "../tests/fixtures/js/73_cloud_post_raw_noncanonical_signed_raw.json"
        ));
        assert_eq!(x.status, 401);
        let req = x.req_header.unwrap();
        assert_eq!(
            verify(&req, x.req_body.as_bytes(), &[KEY], t_of(&req)),
            Err(SignError::Mismatch)
        );
        // js/75, py/72: a wrong HMAC.
        for capture in [
            include_str!("../tests/fixtures/js/75_cloud_post_bad_signature.json"),
            include_str!("../tests/fixtures/py/72_cloud_post_bad_signature.json"),
        ] {
            let x = exchange(capture);
            assert_eq!(x.status, 401);
            let req = x.req_header.unwrap();
            assert_eq!(
                verify(&req, x.req_body.as_bytes(), &[KEY], t_of(&req)),
                Err(SignError::Mismatch)
            );
        }
        // js/76: 10 minutes old (the capture was made with js/75's clock). The HMAC itself
        // is right: it verifies at its own time.
        let now = t_of(
            &exchange(include_str!(
                "../tests/fixtures/js/75_cloud_post_bad_signature.json"
            ))
            .req_header
            .unwrap(),
        );
        let x = exchange(include_str!(
            "../tests/fixtures/js/76_cloud_post_expired_signature.json"
        ));
        let req = x.req_header.unwrap();
        let t = t_of(&req);
        assert_eq!(
            verify(&req, x.req_body.as_bytes(), &[KEY], now),
            Err(SignError::Expired { t, now })
        );
        assert_eq!(verify(&req, x.req_body.as_bytes(), &[KEY], t - 300), Ok(0));
        assert_eq!(
            verify(&req, x.req_body.as_bytes(), &[KEY], t - 301),
            Err(SignError::Expired { t, now: t - 301 })
        );
        // js/77: no header at all.
        let x = exchange(include_str!(
            "../tests/fixtures/js/77_cloud_post_no_signature.json"
        ));
        assert_eq!(x.req_header, None);
        assert_eq!(
            verify("", x.req_body.as_bytes(), &[KEY], 0),
            Err(SignError::Missing)
        );
    }

    #[test]
    fn round_trips_and_reports_bad_input() {
        let body = br#"{"b":1,"a":[1.0,2]}"#;
        let h = signature_header(
            &crate::jcs::canonical(&serde_json::from_slice(body).unwrap()),
            KEY,
            1000,
        );
        assert_eq!(verify(&h, body, &[KEY], 1000), Ok(0));
        assert_eq!(verify(&h, br#"{"a":[1,2],"b":1}"#, &[KEY], 1000), Ok(0));
        assert_eq!(
            verify(&h, br#"{"a":[1,2],"b":2}"#, &[KEY], 1000),
            Err(SignError::Mismatch)
        );
        assert_eq!(verify(&h, body, &[], 1000), Err(SignError::NoKey));
        assert_eq!(verify(&h, body, &[""], 1000), Err(SignError::NoKey));
        for bad in ["t=abc&s=00", "s=00", "t=5", "garbage", "t=1000&s=zz"] {
            assert!(
                matches!(
                    verify(bad, body, &[KEY], 1000),
                    Err(SignError::Malformed(_))
                ),
                "{bad}"
            );
        }
        // The prefix does not take part in the HMAC, whatever the env.
        assert_eq!(
            signature(b"x", "signkey-prod-abcd", 1),
            signature(b"x", "abcd", 1)
        );
        assert_eq!(
            signature(b"x", "signkey-branch_1-abcd", 1),
            signature(b"x", "abcd", 1)
        );
    }

    #[test]
    fn key_prefixes() {
        assert_eq!(key_prefix("signkey-prod-12345678"), "signkey-prod-");
        assert_eq!(strip_prefix("signkey-prod-12345678"), "12345678");
        assert_eq!(strip_prefix("12345678"), "12345678");
        assert_eq!(strip_prefix("signkey--1234"), "signkey--1234");
        assert_eq!(strip_prefix("signkey-prod"), "signkey-prod");
    }

    #[test]
    fn bearer_is_the_hashed_key() {
        // The SDK spec's vector.
        assert_eq!(
            bearer("signkey-prod-12345678").unwrap(),
            "signkey-prod-b2ed992186a5cb19f6668aade821f502c1d00970dfd0e35128d51bac4649916c"
        );
        // The captures' key (notes.hashed_key_for_api_auth).
        let hashed =
            "signkey-test-1c5663dffbfe59fa348d7f741e97f0416bd9de62c48cb05f02fcbc9b7c810c56";
        assert_eq!(bearer(KEY).unwrap(), hashed);
        assert_eq!(
            bearer("12345678").unwrap(),
            "b2ed992186a5cb19f6668aade821f502c1d00970dfd0e35128d51bac4649916c"
        );
        assert_eq!(bearer("signkey-prod-xyz"), Err(SignError::KeyNotHex));
    }

    fn authorization(capture: &str) -> String {
        let c: Value = serde_json::from_str(capture).unwrap();
        let reg = &c["dev_server_requests"][0];
        reg["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0].as_str().unwrap().eq_ignore_ascii_case("authorization"))
            .map(|p| p[1].as_str().unwrap().to_string())
            .unwrap()
    }

    #[test]
    fn accepts_the_bearer_tokens_the_sdks_send() {
        // JS: `Bearer signkey-test-<hash>`; Python: `Bearer <hash>` without the prefix.
        let js = authorization(include_str!(
            "../tests/fixtures/js/78_cloud_put_unsigned_out_of_band.json"
        ));
        let py = authorization(include_str!(
            "../tests/fixtures/py/73_cloud_put_unsigned.json"
        ));
        assert!(js.starts_with("Bearer signkey-test-"));
        assert!(!py.contains("signkey"));
        for presented in [js.as_str(), py.as_str()] {
            assert!(matches_bearer(presented, KEY), "{presented}");
            assert!(
                !matches_bearer(presented, "signkey-test-abcdef"),
                "{presented}"
            );
        }
        // The plain key is accepted too, with or without `Bearer ` and the prefix.
        assert!(matches_bearer(KEY, KEY));
        assert!(matches_bearer(
            &format!("Bearer {}", strip_prefix(KEY)),
            KEY
        ));
        assert!(matches_bearer(
            &format!("bearer {}", bearer(KEY).unwrap()),
            KEY
        ));
        // The JS SDK with no key sends `Bearer undefined` (js/02): never a match.
        assert!(!matches_bearer("Bearer undefined", KEY));
        assert!(!matches_bearer("Bearer ", KEY));
        assert!(!matches_bearer("Bearer x", ""));
    }
}
