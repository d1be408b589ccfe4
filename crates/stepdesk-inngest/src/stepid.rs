//! Step ids: what goes in the `steps` map, `ctx.stack.stack` and `?stepId=`.
//!
//! Protocol §1.11: the hashed id is the lowercase hex SHA-1 of the user's step id; the n-th
//! repeat (n ≥ 1, zero-based) of the same user id in one run hashes `"<id>:<n>"` instead.
//! Captures: `js/20_hello_call1_no_steps` (`first-step` → `efec2b20…`), and `RunComplete`'s
//! fixed id `sha1("complete")` in `js/60_hello_with_fn_id_and_qi_id_checkpointing`.

use std::collections::HashMap;

use sha1::{Digest, Sha1};

/// The `stepId` of a discovery request (run the function, do not target a step).
pub const DISCOVERY: &str = "step";

/// Lowercase hex SHA-1 of `id`.
pub fn hash(id: &str) -> String {
    hex::encode(Sha1::digest(id.as_bytes()))
}

/// The id to hash for the `index`-th use (zero-based) of a user id: `id`, `id:1`, `id:2`, …
pub fn indexed(id: &str, index: u32) -> String {
    if index == 0 {
        id.to_string()
    } else {
        format!("{id}:{index}")
    }
}

/// Hands out hashed ids for the steps a function body reaches, in order, applying the `:N`
/// rule to repeated user ids (what an SDK does while replaying one request).
#[derive(Debug, Default, Clone)]
pub struct StepIds {
    seen: HashMap<String, u32>,
}

impl StepIds {
    pub fn new() -> StepIds {
        StepIds::default()
    }

    /// The hashed id of the next step named `id`, and its zero-based index among the steps
    /// of that name (0 the first time).
    pub fn next(&mut self, id: &str) -> (String, u32) {
        let count = self.seen.entry(id.to_string()).or_insert(0);
        let index = *count;
        *count += 1;
        (hash(&indexed(id, index)), index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_the_protocol_vectors() {
        assert_eq!(
            hash("my-step-id"),
            "e7d8a2f140845095749d60246ff1110c9d01d76a"
        );
        assert_eq!(
            hash("my-step-id:1"),
            "f47c6228c581af870aa285200cf95ec3ac59bb6a"
        );
        assert_eq!(hash("complete"), "0737c22d3bfae812339732d14d8c7dbd6dc4e09c");
    }

    #[test]
    fn hashes_the_captured_step_ids() {
        // js/20, js/21, js/30: the ids the JS SDK reported for these user ids.
        assert_eq!(
            hash("first-step"),
            "efec2b2037910199abcc3c58998255afa3066709"
        );
        assert_eq!(
            hash("second-step"),
            "b84c4a1656207bc4c25076438eb7ab7d696322c7"
        );
        assert_eq!(hash("wait"), "daaad336276d15594d0e765f96c17cd746bf4971");
    }

    #[test]
    fn repeats_get_a_numeric_suffix() {
        let mut ids = StepIds::new();
        assert_eq!(ids.next("my-step-id"), (hash("my-step-id"), 0));
        assert_eq!(ids.next("other"), (hash("other"), 0));
        let (second, index) = ids.next("my-step-id");
        assert_eq!(index, 1);
        assert_eq!(second, "f47c6228c581af870aa285200cf95ec3ac59bb6a");
        assert_eq!(ids.next("my-step-id"), (hash("my-step-id:2"), 2));
        assert_eq!(indexed("x", 0), "x");
        assert_eq!(indexed("x", 3), "x:3");
    }
}
