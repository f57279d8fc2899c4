//! Client-side token generation requests on arbitrary input: the JSON body, the client public
//! key, the IV and the payload, as the operator processes them.
//!
//! First byte even: the rest is the request body. Odd: the rest is a payload that is properly
//! encrypted to the server key (with a fuzzed timestamp), so the decrypted-JSON path is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uid2_proto::cstg::{self, CstgKeyPair};
use uid2_proto::encoding::base64_decode;
use uid2_proto::wire::{CstgPayload, CstgRequest};

fuzz_target!(|data: &[u8]| {
    let server = CstgKeyPair::from_scalar(&[7; 32]).expect("valid scalar");
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let Ok(request) = serde_json::from_slice::<CstgRequest>(rest) else { return };
        let Ok(public) = base64_decode(&request.public_key) else { return };
        if let Ok(shared) = server.shared_secret(&public) {
            if let Ok(plain) = cstg::open_payload(&shared, &request) {
                let _ = serde_json::from_slice::<CstgPayload>(&plain);
            }
        }
        return;
    }
    let timestamp = i64::from(mode) << 33;
    let app = (mode & 2 != 0).then_some("com.example.app");
    let client = CstgKeyPair::from_scalar(&[9; 32]).expect("valid scalar");
    let shared = client.shared_secret(server.public_key_der()).expect("valid key");
    let mut boxed = Vec::new();
    uid2_proto::cipher::GcmKey::new(&shared).seal_into([1; 12], cstg::aad(timestamp, app).as_bytes(), rest, &mut boxed);
    let request = CstgRequest {
        payload: uid2_proto::encoding::base64_encode(&boxed[12..]),
        iv: uid2_proto::encoding::base64_encode(&boxed[..12]),
        public_key: uid2_proto::encoding::base64_encode(client.public_key_der()),
        timestamp,
        subscription_id: "s".into(),
        app_name: app.map(str::to_owned),
    };
    let shared = server.shared_secret(&base64_decode(&request.public_key).unwrap()).expect("valid key");
    let plain = cstg::open_payload(&shared, &request).expect("sealed above");
    let _ = serde_json::from_slice::<CstgPayload>(&plain);
});
