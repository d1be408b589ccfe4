//! RFC 8785 (JCS) canonical JSON: sorted keys, no whitespace, ECMAScript number formatting.
//!
//! Protocol §1.3: the server sends every call request body as JCS bytes and signs those
//! bytes; the JS and Python SDKs re-canonicalise the parsed body before checking the
//! signature, so a body that is not canonical fails verification (captures
//! `js/73_cloud_post_raw_noncanonical_signed_raw` vs `js/74_…_signed_canonical`).
//! Implemented with `serde_jcs` rather than by hand: number formatting is the subtle part.

use serde_json::Value;

/// The canonical bytes of `value`.
///
/// Cannot fail for a `serde_json::Value`: its keys are strings and its numbers finite.
pub fn canonical(value: &Value) -> Vec<u8> {
    serde_jcs::to_vec(value).expect("a serde_json::Value always has a canonical form")
}

/// The canonical bytes of any serializable value (a `CallRequest`, say).
pub fn canonical_of<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_jcs::to_vec(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str("{ \"b\": 1, \"a\": {\"d\": [1, 2], \"c\": null} }").unwrap();
        assert_eq!(
            canonical(&v),
            br#"{"a":{"c":null,"d":[1,2]},"b":1}"#.to_vec()
        );
    }

    #[test]
    fn formats_numbers_as_ecmascript() {
        let v = json!({"f": 1.0, "e": 1e21, "s": 0.000001, "n": -0.0, "big": 1767225600000i64});
        assert_eq!(
            String::from_utf8(canonical(&v)).unwrap(),
            r#"{"big":1767225600000,"e":1e+21,"f":1,"n":0,"s":0.000001}"#
        );
    }

    #[test]
    fn reproduces_the_body_the_sdk_accepted() {
        // The executor in the captures sent canonical bodies; re-canonicalising one of them
        // must give the very same bytes.
        let capture: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/js/20_hello_call1_no_steps.json"
        ))
        .unwrap();
        let raw = capture["request"]["body_raw"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(canonical(&parsed), raw.as_bytes());
    }
}
