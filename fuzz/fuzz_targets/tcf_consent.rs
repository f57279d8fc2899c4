//! TCF v2 consent-string decoding on arbitrary input: text as sent in `tcf_consent_string`, and
//! raw bits behind a valid version field, so the vendor sections are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uid2_proto::encoding::base64url_encode;
use uid2_proto::tcf::{EUID_VENDOR_ID, TcString};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let text = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        }
    } else {
        // Version 2 in the first six bits, the fuzzer's bytes after it.
        let mut bytes = vec![0b0000_1000 | (rest.first().copied().unwrap_or(0) & 0b11)];
        bytes.extend_from_slice(rest.get(1..).unwrap_or_default());
        base64url_encode(&bytes)
    };
    if let Ok(tc) = TcString::parse(&text) {
        let _ = tc.allows_euid(EUID_VENDOR_ID);
        let _ = tc.vendor_consents.ids().take(100).count();
    }
});
