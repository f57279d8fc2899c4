//! Reading operator answers in tests.

use std::collections::HashMap;

use serde_json::Value;

/// The `mapped` list of a decrypted `/v2/identity/map` answer: identifier → (raw UID, bucket
/// id). Panics, showing the answer, if it has no such list.
pub fn mapped_identities(answer: &Value) -> HashMap<String, (String, String)> {
    answer["body"]["mapped"]
        .as_array()
        .unwrap_or_else(|| panic!("no mapped identities in {answer}"))
        .iter()
        .map(|m| {
            let field = |k: &str| {
                m[k].as_str()
                    .unwrap_or_else(|| panic!("no {k} in {m}"))
                    .to_owned()
            };
            (
                field("identifier"),
                (field("advertising_id"), field("bucket_id")),
            )
        })
        .collect()
}
