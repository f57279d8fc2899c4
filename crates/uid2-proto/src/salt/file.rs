//! Salt files: one bucket a line, line *i* being bucket index *i*.
//!
//! Two formats exist. The current one has 11 comma-separated fields, blank meaning absent:
//! `id, last_updated_ms, current_salt, refresh_from_ms, previous_salt, current_key_id,
//! current_key, current_key_salt, previous_key_id, previous_key, previous_key_salt`.
//! The 2021 one has 3: `id, last_updated_ms, salt`. Both load; files are written in the current one.

use super::{BucketKey, BucketSecret, BucketView, SaltBucket, SecretView};

/// A salt file line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("salt file line {line}: {reason}")]
pub struct SaltFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a salt file of either format into owned buckets. Blank lines are skipped.
pub fn parse_salt_file(text: &str) -> Result<Vec<SaltBucket>, SaltFileError> {
    let mut buckets = Vec::new();
    for_each_bucket(text, |bucket| {
        buckets.push(bucket.to_bucket());
        Ok(())
    })?;
    Ok(buckets)
}

/// Parses each non-blank line of a salt file of either format and hands its bucket, borrowed
/// from `text`, to `take`, in order; returns how many there were. A line that does not parse,
/// or whose bucket `take` refuses (with a reason), is an error naming its 1-based number.
///
/// Borrowing lets a loader pack a file straight into a [`super::SaltTable`] without an owned
/// record per bucket (a million of them is most of an operator's start-up).
pub(super) fn for_each_bucket<'a>(
    text: &'a str,
    mut take: impl FnMut(BucketView<'a>) -> Result<(), &'static str>,
) -> Result<usize, SaltFileError> {
    let mut count = 0;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        parse_line(line)
            .and_then(&mut take)
            .map_err(|reason| SaltFileError {
                line: index + 1,
                reason,
            })?;
        count += 1;
    }
    Ok(count)
}

fn parse_line(line: &str) -> Result<BucketView<'_>, &'static str> {
    const WRONG_COUNT: &str = "expected 3 or 11 comma-separated fields";
    let mut fields = [""; 11];
    let mut count = 0;
    for f in line.split(',') {
        *fields.get_mut(count).ok_or(WRONG_COUNT)? = f;
        count += 1;
    }
    if count != 3 && count != 11 {
        return Err(WRONG_COUNT);
    }
    let field = |i: usize| Some(fields[i]).filter(|f| !f.is_empty());
    let id = field(0)
        .ok_or("missing bucket id")?
        .parse::<u32>()
        .map_err(|_| "bucket id is not a number")?;
    let last_updated_ms = field(1)
        .ok_or("missing last_updated")?
        .parse::<i64>()
        .map_err(|_| "last_updated is not a number")?;
    let refresh_from_ms = field(3)
        .map(|v| v.parse::<i64>().map_err(|_| "refresh_from is not a number"))
        .transpose()?;
    let key = |id_at: usize| -> Result<Option<SecretView<'_>>, &'static str> {
        match (field(id_at), field(id_at + 1)) {
            (Some(key_id), Some(key)) => Ok(Some(SecretView::Key {
                id: key_id.parse().map_err(|_| "key id is not a number")?,
                key,
                salt: field(id_at + 2).unwrap_or_default(),
            })),
            _ => Ok(None),
        }
    };
    let current = match (field(2), key(5)?) {
        (Some(salt), _) => SecretView::Salt(salt),
        (None, Some(key)) => key,
        (None, None) => return Err("bucket has neither a salt nor key material"),
    };
    let previous = match (field(4), key(8)?) {
        (Some(salt), _) => Some(SecretView::Salt(salt)),
        (None, key) => key,
    };
    Ok(BucketView {
        id,
        last_updated_ms,
        refresh_from_ms,
        current,
        previous,
    })
}

/// Writes buckets in the current 11-field format, in order.
pub fn write_salt_file<'a>(buckets: impl IntoIterator<Item = &'a SaltBucket>) -> String {
    use std::fmt::Write as _;
    let buckets = buckets.into_iter();
    // Written in place, without a string per field: a store writes a million buckets this way
    // when it is initialised and at every salt rotation. A bucket with a salt is ≈ 90 bytes.
    let mut out = String::with_capacity(buckets.size_hint().0 * 96);
    let key_fields = |out: &mut String, k: Option<&BucketKey>| match k {
        Some(k) => {
            let _ = write!(out, ",{},{},{}", k.id, k.key, k.salt);
        }
        None => out.push_str(",,,"),
    };
    for b in buckets {
        let (salt, key) = split(Some(&b.current));
        let (prev_salt, prev_key) = split(b.previous.as_ref());
        let _ = write!(
            out,
            "{},{},{},",
            b.id,
            b.last_updated_ms,
            salt.unwrap_or_default()
        );
        if let Some(refresh_from) = b.refresh_from_ms {
            let _ = write!(out, "{refresh_from}");
        }
        out.push(',');
        out.push_str(prev_salt.unwrap_or_default());
        key_fields(&mut out, key);
        key_fields(&mut out, prev_key);
        out.push('\n');
    }
    out
}

fn split(secret: Option<&BucketSecret>) -> (Option<&str>, Option<&BucketKey>) {
    match secret {
        Some(BucketSecret::Salt(s)) => (Some(s.as_str()), None),
        Some(BucketSecret::Key(k)) => (None, Some(k)),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_load_and_the_current_one_round_trips() {
        let old = "1000000,1614556800000,y5YitNf/KFtceipDz8nqsFVmBZsK3KY7s8bOVM4gMD4=\n";
        let buckets = parse_salt_file(old).unwrap();
        assert_eq!(buckets[0].id, 1_000_000);
        assert_eq!(buckets[0].refresh_from_ms, None);
        assert_eq!(
            buckets[0].current,
            BucketSecret::Salt("y5YitNf/KFtceipDz8nqsFVmBZsK3KY7s8bOVM4gMD4=".into())
        );

        let current = "1,10,,20,prev,7,kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk,ss,,,\n";
        let buckets = parse_salt_file(current).unwrap();
        assert!(matches!(&buckets[0].current, BucketSecret::Key(k) if k.id == 7 && k.salt == "ss"));
        assert_eq!(buckets[0].previous, Some(BucketSecret::Salt("prev".into())));
        assert_eq!(buckets[0].refresh_from_ms, Some(20));
        assert_eq!(
            parse_salt_file(&write_salt_file(&buckets)).unwrap(),
            buckets
        );
        assert_eq!(write_salt_file(&buckets), current, "written as read");
        assert_eq!(
            write_salt_file(&parse_salt_file(old).unwrap()),
            "1000000,1614556800000,y5YitNf/KFtceipDz8nqsFVmBZsK3KY7s8bOVM4gMD4=,,,,,,,,\n"
        );
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        let err = parse_salt_file("1,2,s\nx,2,s\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse_salt_file("1,2").is_err());
        assert!(parse_salt_file("1,2,,,,,,,,,").is_err());
        assert!(parse_salt_file("1,notanumber,s").is_err());
    }
}
