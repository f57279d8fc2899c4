//! Bucket ids as the API reports them: `id_prefix` followed by the Hashids encoding of the
//! numeric bucket id under the operator's `id_secret` (minimum length 9, default alphabet).

use super::hashids::Hashids;

/// Turns numeric bucket ids into the strings `/v2/identity/map` and `/v2/identity/buckets` show.
#[derive(Debug, Clone)]
pub struct BucketIdEncoder {
    prefix: String,
    hashids: Hashids,
}

/// The Hashids minimum length the official operator uses.
const MIN_LENGTH: usize = 9;

impl BucketIdEncoder {
    /// An encoder for `prefix` and `secret`.
    pub fn new(prefix: &str, secret: &str) -> Self {
        let hashids = Hashids::new(secret.as_bytes(), MIN_LENGTH);
        Self {
            prefix: prefix.to_owned(),
            hashids,
        }
    }

    /// The string id of bucket `id`.
    pub fn encode(&self, id: u32) -> String {
        let mut out = String::with_capacity(self.prefix.len() + MIN_LENGTH);
        out.push_str(&self.prefix);
        self.hashids.encode_into(u64::from(id), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_official_operator_fixture_ids() {
        let encoder = BucketIdEncoder::new("b", "HF6Qz42HBbVHINxhh191dB09BCuTWyBkNtrNicO4ZCw=");
        let expected = [
            "bKaoveQoPR",
            "b1aZVGl7aB",
            "bv3WM92zaA",
            "bl5yy6kr58",
            "be58Mjz13q",
        ];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(encoder.encode(1_000_000 + i as u32), *want);
        }
        assert_eq!(BucketIdEncoder::new("", "id secret").encode(1), "lEMWeGxL2");
    }
}
