//! Advertising-token decoding on arbitrary input.
//!
//! First byte even: the rest is token text. Odd: the rest is plaintext that is sealed under the
//! known keys first (master layer = fuzzed fields around a site layer of fuzzed bytes), so the
//! parsers behind authentication are reached too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uid2_proto::encoding::base64url_encode;
use uid2_proto::key::{Key, KeyRing};
use uid2_proto::token::advertising;

fuzz_target!(|data: &[u8]| {
    let master = Key::new(101, -1, Some(-1), 0, 0, i64::MAX, [1; 32]);
    let site = Key::new(104, 123, Some(501), 0, 0, i64::MAX, [4; 32]);
    let ring = KeyRing::new([master.clone(), site.clone()]);
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = advertising::decode(text, &ring, (mode as i64) << 40);
        }
        return;
    }
    // Layout: header(1) version(1) ‖ master plaintext prefix (33 bytes from input) ‖ site plaintext (rest).
    let split = rest.len().min(35);
    let (head, site_plain) = rest.split_at(split);
    let mut fixed = [0u8; 35];
    fixed[..head.len()].copy_from_slice(head);
    let mut site_box = Vec::new();
    site.gcm().seal_into([2; 12], &[], site_plain, &mut site_box);
    let mut master_plain = fixed[2..35].to_vec();
    master_plain[29..33].copy_from_slice(&104u32.to_be_bytes());
    master_plain.extend_from_slice(&site_box);
    let mut token = vec![fixed[0], if mode & 2 == 0 { 128 } else { 112 }];
    token.extend_from_slice(&101u32.to_be_bytes());
    master.gcm().seal_into([3; 12], &[], &master_plain, &mut token);
    let text = if token[1] == 128 { base64url_encode(&token) } else { uid2_proto::encoding::base64_encode(&token) };
    let _ = advertising::decode(&text, &ring, i64::MIN);
});
