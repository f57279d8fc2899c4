//! Refresh-token and refresh-wrapper decoding on arbitrary input.
//!
//! First byte even: the rest is token text (tried as an inner token and as a wrapper). Odd: the
//! rest is plaintext sealed under the known refresh key first, so the payload parsers are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uid2_proto::encoding::base64_encode;
use uid2_proto::envelope::RefreshEnvelope;
use uid2_proto::key::{Key, KeyRing};
use uid2_proto::token::RefreshToken;

fuzz_target!(|data: &[u8]| {
    let refresh = Key::new(102, -2, Some(-2), 0, 0, i64::MAX, [2; 32]);
    let ring = KeyRing::new([refresh.clone()]);
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = RefreshToken::decode(text, &ring);
            let _ = RefreshEnvelope::open(text, &ring);
        }
        return;
    }
    // An inner v3 token with a fuzzed payload, and a wrapper with a fuzzed JSON payload.
    let mut token = vec![rest.first().copied().unwrap_or(3), 112];
    token.extend_from_slice(&102u32.to_be_bytes());
    refresh.gcm().seal_into([4; 12], &[], rest, &mut token);
    let _ = RefreshToken::decode(&base64_encode(&token), &ring);

    let mut wrapper = vec![mode & 0x10];
    wrapper.extend_from_slice(&102u32.to_be_bytes());
    refresh.gcm().seal_into([5; 12], &[], rest, &mut wrapper);
    let _ = RefreshEnvelope::open(&base64_encode(&wrapper), &ring);
});
