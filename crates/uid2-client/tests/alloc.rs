//! `decrypt` allocates nothing: a counting global allocator (this test runs alone in its own
//! process, without the test harness) sees no allocation during decryptions of every token
//! version and outcome, once the calling thread has decrypted once (arc-swap registers the
//! thread on its first load). The raw UID is returned by value; only turning it into text
//! (`uid()`) allocates, which the counter sees.

#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use serde_json::json;
use uid2_client::{BidstreamClient, DecryptionStatus, SharingClient, TokenVersion};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = std::hint::black_box(f());
    (r, ALLOCATIONS.with(Cell::get) - before)
}

fn main() {
    let site_data = json!([{"id": SITE_ID, "domain_names": ["a.example", "example.com"]}]);
    let bidstream = BidstreamClient::new("http://127.0.0.1:9", "k", SECRET).unwrap();
    bidstream
        .refresh_json(&bidstream_json(
            &[master(), site()],
            "UID2",
            3 * 86_400,
            site_data,
        ))
        .unwrap();
    let sharing = SharingClient::new("http://127.0.0.1:9", "k", SECRET).unwrap();
    sharing
        .refresh_json(&sharing_json(&[master(), site()], "UID2", 30 * 86_400))
        .unwrap();

    let v4 = Mint::default().token(&master(), &site());
    let v3 = Mint {
        version: TokenVersion::V3,
        ..Mint::default()
    }
    .token(&master(), &site());
    let v2 = Mint {
        version: TokenVersion::V2,
        raw_uid: UID_V2,
        ..Mint::default()
    }
    .token(&master(), &site());
    let cstg = Mint {
        privacy_bits: 3,
        ..Mint::default()
    }
    .token(&master(), &site());
    let long = Mint {
        created_ms: NOW,
        expires_ms: NOW + 10 * DAY,
        ..Mint::default()
    }
    .token(&master(), &site());
    // A character of the ciphertext changed (the last one may carry only padding bits).
    let middle = v4.len() / 2;
    let replaced = if &v4[middle..=middle] == "A" {
        "Q"
    } else {
        "A"
    };
    let tampered = format!("{}{replaced}{}", &v4[..middle], &v4[middle + 1..]);
    let other_master = uid2_proto::key::Key::new(
        900,
        -1,
        Some(MASTER_KEYSET),
        0,
        0,
        (NOW + DAY) / 1000,
        [9; 32],
    );
    let unknown_master = Mint::default().token(&other_master, &site());
    let other_site =
        uid2_proto::key::Key::new(901, 77, Some(77), 0, 0, (NOW + DAY) / 1000, [8; 32]);
    let unknown_site = Mint::default().token(&master(), &other_site);
    let euid = Mint {
        scope: uid2_client::IdentityScope::Euid,
        ..Mint::default()
    }
    .token(&master(), &site());
    // Version byte 99 after a valid header byte.
    let unknown_version = uid2_proto::encoding::base64url_encode(&[3, 99, 0, 0, 0, 1, 0, 0, 0]);
    let unloaded = BidstreamClient::new("http://127.0.0.1:9", "k", SECRET).unwrap();

    // Warm up: the first load on a thread registers it with arc-swap.
    assert!(
        bidstream
            .decrypt_token_into_raw_uid_at(&v4, None, NOW)
            .is_success()
    );
    assert!(sharing.decrypt_token_into_raw_uid_at(&v4, NOW).is_success());

    let cases: Vec<(&str, &str, Option<&str>, i64, DecryptionStatus)> = vec![
        ("v4", &v4, None, NOW, DecryptionStatus::Success),
        ("v3", &v3, None, NOW, DecryptionStatus::Success),
        ("v2", &v2, None, NOW, DecryptionStatus::Success),
        (
            "cstg, listed domain",
            &cstg,
            Some("EXAMPLE.COM"),
            NOW,
            DecryptionStatus::Success,
        ),
        (
            "cstg, other domain",
            &cstg,
            Some("b.example"),
            NOW,
            DecryptionStatus::DomainNameCheckFailed,
        ),
        (
            "expired",
            &v4,
            None,
            NOW + 2 * HOUR,
            DecryptionStatus::ExpiredToken,
        ),
        (
            "lifetime",
            &long,
            None,
            NOW,
            DecryptionStatus::InvalidTokenLifetime,
        ),
        (
            "tampered",
            &tampered,
            None,
            NOW,
            DecryptionStatus::InvalidPayload,
        ),
        (
            "garbage",
            "not a token at all",
            None,
            NOW,
            DecryptionStatus::InvalidPayload,
        ),
        (
            "keys expired",
            &v4,
            None,
            NOW + 400 * DAY,
            DecryptionStatus::KeysNotSynced,
        ),
        (
            "unknown master key",
            &unknown_master,
            None,
            NOW,
            DecryptionStatus::NotAuthorizedForMasterKey,
        ),
        (
            "unknown site key",
            &unknown_site,
            None,
            NOW,
            DecryptionStatus::NotAuthorizedForKey,
        ),
        (
            "EUID token, UID2 keys",
            &euid,
            None,
            NOW,
            DecryptionStatus::InvalidIdentityScope,
        ),
        (
            "unknown version",
            &unknown_version,
            None,
            NOW,
            DecryptionStatus::VersionNotSupported,
        ),
    ];
    for (name, token, domain, now, expected) in cases {
        let (r, n) =
            allocations_during(|| bidstream.decrypt_token_into_raw_uid_at(token, domain, now));
        assert_eq!(r.status, expected, "{name}");
        assert_eq!(n, 0, "bidstream decrypt ({name}) allocated {n} times");
        println!("bidstream decrypt, {name}: {:?}, 0 allocations", r.status);
    }
    let (r, n) = allocations_during(|| unloaded.decrypt_token_into_raw_uid_at(&v4, None, NOW));
    assert_eq!(r.status, DecryptionStatus::NotInitialized);
    assert_eq!(n, 0, "decrypt without keys allocated {n} times");
    println!("bidstream decrypt, no keys: {:?}, 0 allocations", r.status);
    let (r, n) = allocations_during(|| sharing.decrypt_token_into_raw_uid_at(&v4, NOW));
    assert!(r.is_success());
    assert_eq!(n, 0, "sharing decrypt allocated {n} times");
    println!("sharing decrypt, v4: 0 allocations");

    // The counter works: the base64 text of the raw UID is one allocation.
    let (uid, n) = allocations_during(|| r.uid());
    assert_eq!(uid.as_deref(), Some(UID2_EMAIL));
    assert_eq!(n, 1, "uid() should allocate its String once");
    println!("control: uid() allocates {n} time");
}
