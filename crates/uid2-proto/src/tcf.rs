//! TCF v2 consent strings (IAB Transparency and Consent Framework), as EUID publishers send them in
//! `tcf_consent_string`.
//!
//! Only the core segment is decoded, and only as far as consent needs: the fixed header, the
//! special-feature opt-ins, purpose consents and legitimate-interest transparency, and the two
//! vendor sections (bit field or range encoded). Publisher restrictions and the optional segments
//! after the first `.` are checked to be base64url and otherwise skipped, as the official
//! operator's decoder (iabtcf) never reads them to answer a consent question.
//!
//! Bit layout of the core segment (big-endian bit order, every field unsigned):
//! `version 6 ‖ created 36 ‖ last_updated 36 ‖ cmp_id 12 ‖ cmp_version 12 ‖ consent_screen 6 ‖
//! consent_language 12 ‖ vendor_list_version 12 ‖ policy_version 6 ‖ is_service_specific 1 ‖
//! use_non_standard_texts 1 ‖ special_feature_opt_ins 12 ‖ purposes_consent 24 ‖
//! purposes_li_transparency 24 ‖ purpose_one_treatment 1 ‖ publisher_cc 12 ‖ vendor consents ‖
//! vendor legitimate interests ‖ …`, where a vendor section is `max_vendor_id 16 ‖ is_range 1`
//! then either `max_vendor_id` bits (vendor `i + 1` at bit `i`) or `num_entries 12` entries of
//! `is_range 1 ‖ start_or_only 16 [‖ end 16]`.

use crate::encoding::{base64url_decode, is_base64url};

/// The TCF vendor id of the EUID operator (the official operator's `tcf_vendor_id` default).
pub const EUID_VENDOR_ID: u16 = 21;

/// The purposes the official operator requires of its vendor before issuing an EUID token:
/// store information on a device (1), basic ads (2), ads profile (3), personalised ads (4),
/// measure ad performance (7), develop and improve products (10).
pub const EUID_REQUIRED_PURPOSES: [u8; 6] = [1, 2, 3, 4, 7, 10];

/// Special feature 1: use precise geolocation data. The official operator requires it too.
pub const PRECISE_GEOLOCATION: u8 = 1;

/// A consent string that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcfError {
    /// A segment is not URL-safe base64.
    #[error("consent string is not base64url")]
    NotBase64,
    /// The core segment ends inside a field.
    #[error("consent string ends inside its {0}")]
    Truncated(&'static str),
    /// A version other than 2 (TCF v1 strings start with version 1).
    #[error("TCF version {0} is not supported")]
    UnsupportedVersion(u8),
    /// A vendor range whose start is after its end, or whose end is past the section's maximum.
    #[error("vendor range {start}-{end} is invalid (max vendor id {max})")]
    BadRange {
        /// First vendor id of the range.
        start: u16,
        /// Last vendor id of the range.
        end: u16,
        /// The section's `max_vendor_id`.
        max: u16,
    },
}

/// A set of purposes (1–24) or special features (1–12), one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdBits(u32);

impl IdBits {
    /// Reads a field of `len` bits in which the first bit stands for id 1.
    fn read(r: &mut BitReader<'_>, len: u32, field: &'static str) -> Result<Self, TcfError> {
        let raw = r.read(len, field)? as u32;
        // Bit i (from the left) means id i + 1; store id n at bit n.
        Ok(Self((0..len).fold(0, |acc, i| {
            if raw >> (len - 1 - i) & 1 == 1 {
                acc | 1 << (i + 1)
            } else {
                acc
            }
        })))
    }

    /// Whether `id` is in the set.
    pub fn contains(self, id: u8) -> bool {
        id < 32 && self.0 >> id & 1 == 1
    }

    /// The ids in the set, ascending.
    pub fn ids(self) -> impl Iterator<Item = u8> {
        (1..32u8).filter(move |id| self.contains(*id))
    }

    /// Both sets together.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// A set of vendor ids, as sorted, non-overlapping inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VendorSet {
    ranges: Vec<(u16, u16)>,
}

impl VendorSet {
    fn from_ranges(mut ranges: Vec<(u16, u16)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(start) <= u32::from(last.1) + 1 => {
                    last.1 = last.1.max(end);
                }
                _ => merged.push((start, end)),
            }
        }
        Self { ranges: merged }
    }

    /// Whether `vendor` is in the set.
    pub fn contains(&self, vendor: u16) -> bool {
        let after = self.ranges.partition_point(|(start, _)| *start <= vendor);
        after > 0 && self.ranges[after - 1].1 >= vendor
    }

    /// The vendor ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|&(start, end)| start..=end)
    }
}

/// The decoded core segment of a TCF v2 consent string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcString {
    /// Always 2.
    pub version: u8,
    /// When the record was created (ms; the string has decisecond resolution).
    pub created_ms: i64,
    /// When the record was last updated (ms).
    pub last_updated_ms: i64,
    /// The consent management platform.
    pub cmp_id: u16,
    /// Its version.
    pub cmp_version: u16,
    /// The CMP screen consent was given on.
    pub consent_screen: u8,
    /// Two letters, e.g. `*b"EN"` (`b'A'` plus each 6-bit value).
    pub consent_language: [u8; 2],
    /// The global vendor list version.
    pub vendor_list_version: u16,
    /// The TCF policy version.
    pub policy_version: u8,
    /// Whether the string is specific to one service.
    pub is_service_specific: bool,
    /// Whether the CMP used non-standard texts.
    pub use_non_standard_texts: bool,
    /// Special features the user opted in to.
    pub special_feature_opt_ins: IdBits,
    /// Purposes the user consented to.
    pub purposes_consent: IdBits,
    /// Purposes whose legitimate interest was disclosed (and not objected to).
    pub purposes_li_transparency: IdBits,
    /// Purpose 1 was not disclosed (publisher country rules).
    pub purpose_one_treatment: bool,
    /// Two letters, the publisher's country, as `consent_language`.
    pub publisher_cc: [u8; 2],
    /// Vendors the user consented to.
    pub vendor_consents: VendorSet,
    /// Vendors whose legitimate interest was disclosed.
    pub vendor_legitimate_interests: VendorSet,
}

impl TcString {
    /// Decodes a consent string (the core segment, optionally followed by `.`-separated segments).
    pub fn parse(text: &str) -> Result<Self, TcfError> {
        let mut segments = text.split('.');
        let core = base64url_decode(segments.next().unwrap_or_default())
            .map_err(|_| TcfError::NotBase64)?;
        // The optional segments are never read: checked, not decoded.
        if !segments.all(is_base64url) {
            return Err(TcfError::NotBase64);
        }
        let mut r = BitReader::new(&core);
        let version = r.read(6, "version")? as u8;
        if version != 2 {
            return Err(TcfError::UnsupportedVersion(version));
        }
        Ok(Self {
            version,
            created_ms: r.read(36, "created")? as i64 * 100,
            last_updated_ms: r.read(36, "last_updated")? as i64 * 100,
            cmp_id: r.read(12, "cmp_id")? as u16,
            cmp_version: r.read(12, "cmp_version")? as u16,
            consent_screen: r.read(6, "consent_screen")? as u8,
            consent_language: r.letters("consent_language")?,
            vendor_list_version: r.read(12, "vendor_list_version")? as u16,
            policy_version: r.read(6, "policy_version")? as u8,
            is_service_specific: r.read(1, "is_service_specific")? == 1,
            use_non_standard_texts: r.read(1, "use_non_standard_texts")? == 1,
            special_feature_opt_ins: IdBits::read(&mut r, 12, "special_feature_opt_ins")?,
            purposes_consent: IdBits::read(&mut r, 24, "purposes_consent")?,
            purposes_li_transparency: IdBits::read(&mut r, 24, "purposes_li_transparency")?,
            purpose_one_treatment: r.read(1, "purpose_one_treatment")? == 1,
            publisher_cc: r.letters("publisher_cc")?,
            vendor_consents: read_vendors(&mut r)?,
            vendor_legitimate_interests: read_vendors(&mut r)?,
        })
    }

    /// The purposes `vendor` may pursue: those consented to if the vendor has consent, plus those
    /// disclosed under legitimate interest if the vendor has legitimate interest (the rule of the
    /// official operator's `TransparentConsent.hasConsent`).
    pub fn vendor_purposes(&self, vendor: u16) -> IdBits {
        let consent = if self.vendor_consents.contains(vendor) {
            self.purposes_consent
        } else {
            IdBits::default()
        };
        let interest = if self.vendor_legitimate_interests.contains(vendor) {
            self.purposes_li_transparency
        } else {
            IdBits::default()
        };
        consent.union(interest)
    }

    /// Whether the string lets `vendor` (the EUID operator) issue a token: every purpose of
    /// [`EUID_REQUIRED_PURPOSES`] and the [`PRECISE_GEOLOCATION`] special feature.
    pub fn allows_euid(&self, vendor: u16) -> bool {
        let purposes = self.vendor_purposes(vendor);
        EUID_REQUIRED_PURPOSES.iter().all(|p| purposes.contains(*p))
            && self.special_feature_opt_ins.contains(PRECISE_GEOLOCATION)
    }
}

/// Reads one vendor section (consents or legitimate interests).
fn read_vendors(r: &mut BitReader<'_>) -> Result<VendorSet, TcfError> {
    let max = r.read(16, "max_vendor_id")? as u16;
    if r.read(1, "is_range_encoding")? == 0 {
        let mut ranges = Vec::new();
        let mut run: Option<u16> = None;
        for vendor in 1..=max {
            let set = r.read(1, "vendor bit field")? == 1;
            match (set, run) {
                (true, None) => run = Some(vendor),
                (false, Some(start)) => {
                    ranges.push((start, vendor - 1));
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(start) = run {
            ranges.push((start, max));
        }
        return Ok(VendorSet { ranges });
    }
    let entries = r.read(12, "num_entries")?;
    let mut ranges = Vec::with_capacity(entries as usize);
    for _ in 0..entries {
        let is_range = r.read(1, "range entry")? == 1;
        let start = r.read(16, "range entry")? as u16;
        if is_range {
            let end = r.read(16, "range entry")? as u16;
            // The official decoder refuses these two; a single id above the maximum it accepts.
            if start > end || end > max {
                return Err(TcfError::BadRange { start, end, max });
            }
            ranges.push((start, end));
        } else {
            ranges.push((start, start));
        }
    }
    Ok(VendorSet::from_ranges(ranges))
}

/// Reads big-endian bit fields from a byte slice.
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// The next `len` (≤ 64) bits as an unsigned number.
    fn read(&mut self, len: u32, field: &'static str) -> Result<u64, TcfError> {
        debug_assert!(len <= 64);
        let end = self.pos + len as usize;
        if end > self.bytes.len() * 8 {
            return Err(TcfError::Truncated(field));
        }
        let mut value = 0u64;
        for bit in self.pos..end {
            value = value << 1 | u64::from(self.bytes[bit / 8] >> (7 - bit % 8) & 1);
        }
        self.pos = end;
        Ok(value)
    }

    /// Two 6-bit letters (`A` + value), as languages and countries are written.
    fn letters(&mut self, field: &'static str) -> Result<[u8; 2], TcfError> {
        let first = self.read(6, field)? as u8;
        let second = self.read(6, field)? as u8;
        Ok([b'A' + first, b'A' + second])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Consent strings published with the official decoders' tests (iabtcf-java `TCStringV2Test`,
    // uid2-operator `EUIDOperatorVerticleTest`), with the values those tests assert.

    #[test]
    fn decodes_the_header_fields() {
        let tc = TcString::parse("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA").unwrap();
        assert_eq!(tc.version, 2);
        assert_eq!(tc.created_ms, 1_580_058_060_000); // 2020-01-26T17:01:00Z
        assert_eq!(tc.last_updated_ms, 1_612_285_260_000); // 2021-02-02T17:01:00Z
        assert_eq!((tc.cmp_id, tc.cmp_version, tc.consent_screen), (675, 2, 1));
        assert_eq!((tc.vendor_list_version, tc.policy_version), (15, 2));
        assert_eq!((&tc.consent_language, &tc.publisher_cc), (b"EN", b"AA"));
        assert!(!tc.is_service_specific && !tc.use_non_standard_texts);
        assert!(tc.purpose_one_treatment);
        assert_eq!(tc.special_feature_opt_ins.ids().collect::<Vec<_>>(), [1]);
        assert_eq!(tc.purposes_consent.ids().collect::<Vec<_>>(), [2, 10]);
        assert_eq!(
            tc.purposes_li_transparency.ids().collect::<Vec<_>>(),
            [2, 9]
        );
        assert_eq!(tc.vendor_consents.ids().count(), 0);
    }

    #[test]
    fn decodes_bit_field_vendor_sections() {
        let tc = TcString::parse(
            "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA",
        )
        .unwrap();
        assert_eq!(
            tc.purposes_consent.ids().collect::<Vec<_>>(),
            [3, 4, 5, 6, 7, 8, 9]
        );
        assert_eq!(
            tc.vendor_consents.ids().collect::<Vec<_>>(),
            [23, 37, 47, 48, 53, 65, 98]
        );
        assert_eq!(
            tc.vendor_legitimate_interests.ids().collect::<Vec<_>>(),
            [37, 47, 48, 53, 65, 98, 129]
        );
        assert!(tc.vendor_consents.contains(98) && !tc.vendor_consents.contains(99));
    }

    #[test]
    fn decodes_range_vendor_sections_and_ignores_later_segments() {
        let two = "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw";
        let one = "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAQFfgUbABAUaAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw";
        assert_eq!(
            TcString::parse(two)
                .unwrap()
                .vendor_consents
                .ids()
                .collect::<Vec<_>>(),
            [702, 703]
        );
        assert_eq!(
            TcString::parse(one)
                .unwrap()
                .vendor_consents
                .ids()
                .collect::<Vec<_>>(),
            [703]
        );
        let li = TcString::parse("COv__-wOv__-wC2AAAENAPCgAAAAAAAAAAAAA_wAQA_gEBABAEAAAA").unwrap();
        assert_eq!(
            li.vendor_legitimate_interests.ids().collect::<Vec<_>>(),
            [128]
        );
    }

    #[test]
    fn euid_consent_needs_every_purpose_and_precise_geolocation() {
        // Vendor 21 has consent (purposes 1, 3, 4) and legitimate interest (2, 7, 10).
        let enough =
            TcString::parse("CPehNtWPehNtWABAMBFRACBoALAAAEJAAIYgAKwAQAKgArABAAqAAA").unwrap();
        assert!(enough.allows_euid(EUID_VENDOR_ID));
        assert_eq!(
            enough.vendor_purposes(21).ids().collect::<Vec<_>>(),
            [1, 2, 3, 4, 7, 10]
        );
        // The same without consent to purpose 1.
        let missing =
            TcString::parse("CPehXK9PehXK9ABAMBFRACBoADAAAEJAAIYgAKwAQAKgArABAAqAAA").unwrap();
        assert!(!missing.allows_euid(EUID_VENDOR_ID));
        // Another vendor gets nothing from either.
        assert!(!enough.allows_euid(22));
        assert_eq!(enough.vendor_purposes(22), IdBits::default());
        // Purposes without the special feature are not enough.
        let no_geo = TcString {
            special_feature_opt_ins: IdBits::default(),
            ..enough
        };
        assert!(!no_geo.allows_euid(EUID_VENDOR_ID));
    }

    #[test]
    fn bad_strings_give_typed_errors() {
        assert_eq!(
            TcString::parse("invalid_consent_string"),
            Err(TcfError::UnsupportedVersion(34))
        );
        assert_eq!(TcString::parse(""), Err(TcfError::Truncated("version")));
        assert_eq!(TcString::parse("C+/="), Err(TcfError::NotBase64));
        assert_eq!(
            TcString::parse("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA.%%"),
            Err(TcfError::NotBase64)
        );
        // A TCF v1 string.
        assert_eq!(
            TcString::parse("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"),
            Err(TcfError::UnsupportedVersion(1))
        );
        // Every truncation of a valid string fails cleanly.
        let full = "CPehNtWPehNtWABAMBFRACBoALAAAEJAAIYgAKwAQAKgArABAAqAAA";
        for len in 0..full.len() - 4 {
            assert!(TcString::parse(&full[..len]).is_err(), "{len}");
        }
    }

    #[test]
    fn ranges_past_the_maximum_or_backwards_are_refused() {
        // Header of a valid string, then a consent section with max 21, range encoded, one range.
        let header = "CPehNtWPehNtWABAMBFRACBoALAAAEJAAIYgAKwAQAKgArABAAqAAA";
        let bytes = base64url_decode(header).unwrap();
        let mut bits: Vec<bool> = (0..213)
            .map(|i| bytes[i / 8] >> (7 - i % 8) & 1 == 1)
            .collect();
        let mut push = |value: u32, len: u32| {
            for i in (0..len).rev() {
                bits.push(value >> i & 1 == 1);
            }
        };
        push(21, 16);
        push(1, 1);
        push(1, 12);
        push(1, 1);
        push(5, 16);
        push(30, 16);
        let mut out = vec![0u8; bits.len().div_ceil(8) + 8];
        for (i, b) in bits.iter().enumerate() {
            out[i / 8] |= u8::from(*b) << (7 - i % 8);
        }
        let text = crate::encoding::base64url_encode(&out);
        assert_eq!(
            TcString::parse(&text),
            Err(TcfError::BadRange {
                start: 5,
                end: 30,
                max: 21
            })
        );
    }

    #[test]
    fn vendor_sets_merge_overlapping_ranges() {
        let set = VendorSet::from_ranges(vec![(10, 12), (1, 3), (4, 4), (11, 20)]);
        assert_eq!(set.ranges, [(1, 4), (10, 20)]);
        assert!(set.contains(1) && set.contains(4) && set.contains(20));
        assert!(!set.contains(0) && !set.contains(5) && !set.contains(21));
    }
}
