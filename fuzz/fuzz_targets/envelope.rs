//! v2 request/response envelope opening on arbitrary input.
//!
//! First byte even: the rest is a body (tried as base64 text and as raw bytes). Odd: the rest is
//! a plaintext (timestamp ‖ nonce ‖ JSON) sealed under the known client secret first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uid2_proto::cipher::GcmKey;
use uid2_proto::envelope::{open_bare_response, open_request, open_request_base64, open_response};

const NOW: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let key = GcmKey::new(&[3; 32]);
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let _ = open_request_base64(rest, &key, NOW);
        let _ = open_request(rest.to_vec(), &key, NOW);
        let _ = open_response(&key, rest, [0; 8]);
        let _ = open_bare_response(&[3; 32], rest);
        return;
    }
    let mut body = vec![1u8];
    key.seal_into([6; 12], &[], rest, &mut body);
    if let Ok(opened) = open_request(body, &key, NOW) {
        let _ = serde_json::from_slice::<uid2_proto::wire::OptoutStatusRequest>(&opened.payload);
        let _ = serde_json::from_slice::<uid2_proto::wire::IdentityMapV3Request>(&opened.payload);
    }
    let mut response = Vec::new();
    key.seal_into([7; 12], &[], rest, &mut response);
    let _ = open_response(&key, &response, [0; 8]);
});
