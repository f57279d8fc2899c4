//! The salt buckets of an operator, packed for memory.
//!
//! Production has 1,048,576 buckets. As owned records (`String` salts, `Option`s) they cost
//! ≈ 170 B each; here every bucket is a fixed 40-byte record plus its salt text in one shared
//! arena, so a full table stays under 100 MB and lookups are one index into a flat array.

use super::file::{SaltFileError, for_each_bucket};
use super::{
    BucketKey, BucketSecret, FirstLevelHash, RawUid, RawUidSettings, SaltBucket,
    previous_uid_still_reported, raw_uid_v4, refresh_from_ms, salted_raw_uid,
};
use crate::identity::IdentityType;

/// Packed reference to a secret: 0 = none; bit 63 set = key material (index in `keys`);
/// otherwise a salt at `arena[start .. start + len]` with `len` in bits 32..48.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SecretRef(u64);

const KEY_FLAG: u64 = 1 << 63;
const NO_REFRESH_FROM: i64 = i64::MIN;

#[derive(Clone, Copy)]
struct PackedBucket {
    id: u32,
    last_updated_ms: i64,
    refresh_from_ms: i64,
    current: SecretRef,
    previous: SecretRef,
}

#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

#[derive(Clone, Copy)]
struct PackedKey {
    id: u32,
    key: Span,
    salt: Span,
}

/// A secret of a bucket, borrowed from a [`SaltTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretView<'a> {
    /// A salt string.
    Salt(&'a str),
    /// Key material for v4 raw UIDs.
    Key {
        /// Key id.
        id: u32,
        /// The 32-character key.
        key: &'a str,
        /// The key salt.
        salt: &'a str,
    },
}

impl SecretView<'_> {
    fn to_owned_secret(self) -> BucketSecret {
        match self {
            SecretView::Salt(s) => BucketSecret::Salt(s.to_owned()),
            SecretView::Key { id, key, salt } => BucketSecret::Key(BucketKey {
                id,
                key: key.to_owned(),
                salt: salt.to_owned(),
            }),
        }
    }

    fn raw_uid(
        self,
        flh: &FirstLevelHash,
        identity_type: IdentityType,
        settings: RawUidSettings,
    ) -> RawUid {
        match self {
            SecretView::Salt(salt) => salted_raw_uid(flh, salt, identity_type, settings),
            SecretView::Key { id, key, salt } => raw_uid_v4(
                flh,
                id,
                key.as_bytes(),
                salt.as_bytes(),
                identity_type,
                settings,
            )
            .expect("key lengths are checked when the table is built"),
        }
    }
}

/// One bucket, borrowed from a [`SaltTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketView<'a> {
    /// Bucket id.
    pub id: u32,
    /// Last rotation (ms).
    pub last_updated_ms: i64,
    /// Bucket refresh-from (ms), if set.
    pub refresh_from_ms: Option<i64>,
    /// Current secret.
    pub current: SecretView<'a>,
    /// Previous secret, if kept.
    pub previous: Option<SecretView<'a>>,
}

impl BucketView<'_> {
    /// The owned record.
    pub fn to_bucket(&self) -> SaltBucket {
        SaltBucket {
            id: self.id,
            last_updated_ms: self.last_updated_ms,
            refresh_from_ms: self.refresh_from_ms,
            current: self.current.to_owned_secret(),
            previous: self.previous.map(SecretView::to_owned_secret),
        }
    }
}

/// A bucket that cannot be packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaltTableError {
    /// Key material whose key is not exactly 32 bytes (the AES-256 key of v4 raw UIDs).
    #[error("bucket {0}: {reason}", reason = self.reason())]
    BadKeyLength(u32),
    /// A salt longer than 65,535 bytes.
    #[error("bucket {0}: {reason}", reason = self.reason())]
    SaltTooLong(u32),
}

impl SaltTableError {
    /// What is wrong with the bucket, without its id (a salt file error names the line instead).
    fn reason(self) -> &'static str {
        match self {
            Self::BadKeyLength(_) => "key material must be a 32-byte key",
            Self::SaltTooLong(_) => "salt too long",
        }
    }
}

/// The table of salt buckets, indexed by bucket index.
#[derive(Clone, Default)]
pub struct SaltTable {
    buckets: Vec<PackedBucket>,
    arena: String,
    keys: Vec<PackedKey>,
}

impl std::fmt::Debug for SaltTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SaltTable({} buckets)", self.buckets.len())
    }
}

impl SaltTable {
    /// Packs `buckets`; the i-th bucket gets index i. Fails if any key material is not a 32-byte key.
    pub fn new<'a>(
        buckets: impl IntoIterator<Item = &'a SaltBucket>,
    ) -> Result<Self, SaltTableError> {
        let buckets = buckets.into_iter();
        let mut table = Self::with_capacity(buckets.size_hint().0);
        for b in buckets {
            table.push(b)?;
        }
        Ok(table.finish())
    }

    /// An empty table with room for `buckets` buckets, to be filled with [`push`](Self::push)
    /// (loading a million buckets chunk by chunk never holds them all as owned records).
    pub fn with_capacity(buckets: usize) -> Self {
        SaltTable {
            buckets: Vec::with_capacity(buckets),
            arena: String::with_capacity(buckets * 44),
            keys: Vec::new(),
        }
    }

    /// Appends a bucket at the next index.
    pub fn push(&mut self, b: &SaltBucket) -> Result<(), SaltTableError> {
        self.push_view(b.view())
    }

    /// Appends a borrowed bucket (a line of a salt file, say) at the next index.
    pub fn push_view(&mut self, b: BucketView<'_>) -> Result<(), SaltTableError> {
        let current = self.pack(b.id, Some(b.current))?;
        let previous = self.pack(b.id, b.previous)?;
        self.buckets.push(PackedBucket {
            id: b.id,
            last_updated_ms: b.last_updated_ms,
            refresh_from_ms: b.refresh_from_ms.unwrap_or(NO_REFRESH_FROM),
            current,
            previous,
        });
        Ok(())
    }

    /// Appends every bucket of a salt file's text, packed straight from the text; returns how
    /// many. On an error the table holds the buckets before the bad line.
    pub fn push_salt_file(&mut self, text: &str) -> Result<usize, SaltFileError> {
        for_each_bucket(text, |bucket| {
            self.push_view(bucket).map_err(SaltTableError::reason)
        })
    }

    /// Releases spare capacity once filling is done.
    pub fn finish(mut self) -> Self {
        self.buckets.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.keys.shrink_to_fit();
        self
    }

    fn push_text(&mut self, text: &str) -> Span {
        let start = self.arena.len() as u32;
        self.arena.push_str(text);
        Span {
            start,
            len: text.len() as u32,
        }
    }

    fn pack(
        &mut self,
        id: u32,
        secret: Option<SecretView<'_>>,
    ) -> Result<SecretRef, SaltTableError> {
        Ok(match secret {
            None => SecretRef(0),
            Some(SecretView::Salt(salt)) => {
                if salt.len() > 0xffff {
                    return Err(SaltTableError::SaltTooLong(id));
                }
                let span = self.push_text(salt);
                // Bit 48 marks "present", so an empty salt at offset 0 is not mistaken for none.
                SecretRef((u64::from(span.len) << 32) | u64::from(span.start) | (1 << 48))
            }
            Some(SecretView::Key {
                id: key_id,
                key,
                salt,
            }) => {
                if key.len() != 32 {
                    return Err(SaltTableError::BadKeyLength(id));
                }
                let key = self.push_text(key);
                let salt = self.push_text(salt);
                self.keys.push(PackedKey {
                    id: key_id,
                    key,
                    salt,
                });
                SecretRef(KEY_FLAG | (self.keys.len() as u64 - 1))
            }
        })
    }

    fn text(&self, span: Span) -> &str {
        &self.arena[span.start as usize..(span.start + span.len) as usize]
    }

    fn view(&self, r: SecretRef) -> Option<SecretView<'_>> {
        if r.0 == 0 {
            None
        } else if r.0 & KEY_FLAG != 0 {
            let k = self.keys[(r.0 & !KEY_FLAG) as usize];
            Some(SecretView::Key {
                id: k.id,
                key: self.text(k.key),
                salt: self.text(k.salt),
            })
        } else {
            let start = (r.0 & 0xffff_ffff) as usize;
            let len = ((r.0 >> 32) & 0xffff) as usize;
            Some(SecretView::Salt(&self.arena[start..start + len]))
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether the table has no bucket (an operator cannot map anything then).
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The bucket at `index`.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn bucket(&self, index: usize) -> BucketView<'_> {
        let b = &self.buckets[index];
        BucketView {
            id: b.id,
            last_updated_ms: b.last_updated_ms,
            refresh_from_ms: (b.refresh_from_ms != NO_REFRESH_FROM).then_some(b.refresh_from_ms),
            current: self
                .view(b.current)
                .expect("every bucket has a current secret"),
            previous: self.view(b.previous),
        }
    }

    /// The id of the bucket at `index`, without reading its secrets.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn bucket_id(&self, index: usize) -> u32 {
        self.buckets[index].id
    }

    /// Every bucket in index order.
    pub fn iter(&self) -> impl Iterator<Item = BucketView<'_>> + '_ {
        (0..self.len()).map(|i| self.bucket(i))
    }

    /// Reads the memory [`raw_uid`](Self::raw_uid) of each of `flhs` will read (its bucket,
    /// then the start of its secret), so that mapping them afterwards finds it in the cache.
    ///
    /// A bucket and its secret are two reads of main memory, the second waiting for the first;
    /// here all the buckets are read in one loop that does nothing else, then all the secrets
    /// in another, so the core overlaps the misses of a loop instead of stalling on each.
    pub fn touch_many(&self, flhs: &[FirstLevelHash]) {
        const AT_ONCE: usize = 16;
        let mut touched = 0u8;
        for chunk in flhs.chunks(AT_ONCE) {
            let mut secrets = [SecretRef(0); AT_ONCE];
            for (secret, flh) in secrets.iter_mut().zip(chunk) {
                *secret = self.buckets[self.bucket_index(flh)].current;
            }
            for &secret in &secrets[..chunk.len()] {
                touched ^= match self.view(secret) {
                    Some(SecretView::Salt(salt)) => salt.as_bytes().first().copied().unwrap_or(0),
                    Some(SecretView::Key { key, .. }) => key.as_bytes()[0],
                    None => 0,
                };
            }
        }
        // Keeps the reads: their values are otherwise unused.
        std::hint::black_box(touched);
    }

    /// The index of the bucket `flh` falls into.
    ///
    /// # Panics
    /// If the table is empty.
    pub fn bucket_index(&self, flh: &FirstLevelHash) -> usize {
        flh.bucket_index(self.len())
    }

    /// The current raw UID of `flh`.
    pub fn raw_uid(
        &self,
        flh: &FirstLevelHash,
        identity_type: IdentityType,
        settings: RawUidSettings,
    ) -> RawUid {
        let b = &self.buckets[self.bucket_index(flh)];
        self.view(b.current)
            .expect("every bucket has a current secret")
            .raw_uid(flh, identity_type, settings)
    }

    /// The raw UID of `flh` before its bucket's last rotation, while it is still reported
    /// (90 days) and the bucket kept its previous secret.
    pub fn previous_raw_uid(
        &self,
        flh: &FirstLevelHash,
        identity_type: IdentityType,
        settings: RawUidSettings,
        now_ms: i64,
    ) -> Option<RawUid> {
        let b = &self.buckets[self.bucket_index(flh)];
        if !previous_uid_still_reported(b.last_updated_ms, now_ms) {
            return None;
        }
        self.view(b.previous)
            .map(|s| s.raw_uid(flh, identity_type, settings))
    }

    /// When a mapping of `flh` should be refreshed (ms).
    pub fn refresh_from_ms(&self, flh: &FirstLevelHash, now_ms: i64) -> i64 {
        let b = &self.buckets[self.bucket_index(flh)];
        refresh_from_ms(
            (b.refresh_from_ms != NO_REFRESH_FROM).then_some(b.refresh_from_ms),
            now_ms,
        )
    }

    /// Approximate heap bytes held, for memory reports.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<PackedBucket>()
            + self.arena.capacity()
            + self.keys.capacity() * std::mem::size_of::<PackedKey>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_files_pack_straight_from_their_text() {
        let text = "1,10,salt-one,,,,,,,,\n\n2,20,,30,old,7,kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk,ks,,,\n3,40,s3\n";
        let mut direct = SaltTable::with_capacity(3);
        assert_eq!(direct.push_salt_file(text), Ok(3));
        let owned = SaltTable::new(&crate::salt::parse_salt_file(text).unwrap()).unwrap();
        let views: Vec<_> = direct.iter().collect();
        assert_eq!(views, owned.iter().collect::<Vec<_>>());
        assert_eq!(views[1].previous, Some(SecretView::Salt("old")));
        // Errors name the line of the text, blank lines included.
        let mut table = SaltTable::default();
        let err = table
            .push_salt_file("1,1,s\n\n2,2,,,,7,short,salt,,,\n")
            .unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.reason, "key material must be a 32-byte key");
        assert_eq!(table.len(), 1);
        assert_eq!(table.push_salt_file("x,1,s").unwrap_err().line, 1);
    }
    use crate::salt::{DAY_MS, parse_salt_file};

    fn sample() -> Vec<SaltBucket> {
        parse_salt_file(
            "10,100,saltA,900000000000,prevA,,,,,,\n\
             11,200,,,saltB,5,kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk,ks,,,\n\
             12,300,saltC,,,,,,,,\n",
        )
        .unwrap()
    }

    #[test]
    fn packs_and_unpacks_every_field() {
        let buckets = sample();
        let table = SaltTable::new(&buckets).unwrap();
        assert_eq!(table.len(), 3);
        let unpacked: Vec<_> = table.iter().map(|b| b.to_bucket()).collect();
        assert_eq!(unpacked, buckets);
        for (index, bucket) in buckets.iter().enumerate() {
            assert_eq!(table.bucket_id(index), bucket.id);
        }
        assert_eq!(std::mem::size_of::<PackedBucket>(), 40);
    }

    #[test]
    fn rejects_key_material_that_is_not_32_bytes() {
        let buckets = parse_salt_file("1,1,,,,7,short,salt,,,\n").unwrap();
        assert_eq!(
            SaltTable::new(&buckets).unwrap_err(),
            SaltTableError::BadKeyLength(1)
        );
        assert_eq!(
            SaltTableError::BadKeyLength(1).to_string(),
            "bucket 1: key material must be a 32-byte key"
        );
        assert_eq!(
            SaltTableError::SaltTooLong(2).to_string(),
            "bucket 2: salt too long"
        );
    }

    #[test]
    fn previous_uid_and_refresh_from_follow_the_bucket() {
        let table = SaltTable::new(&sample()).unwrap();
        let settings = RawUidSettings::default();
        // Find a hash that lands in bucket 0 (index = 20-bit value mod 3).
        let flh = FirstLevelHash([0u8; 32]);
        assert_eq!(table.bucket_index(&flh), 0);
        let now = 50 * DAY_MS;
        let current = table.raw_uid(&flh, IdentityType::Email, settings);
        let previous = table
            .previous_raw_uid(&flh, IdentityType::Email, settings, now)
            .unwrap();
        assert_ne!(current, previous);
        assert_eq!(
            table.previous_raw_uid(&flh, IdentityType::Email, settings, 200 * DAY_MS),
            None
        );
        assert_eq!(table.refresh_from_ms(&flh, now), 900_000_000_000);
    }
}
