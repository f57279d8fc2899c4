//! Hashids of a single number, as the official operator's Hashids library writes bucket ids
//! (default alphabet and separators, a salt, a minimum length), with everything that depends
//! only on the salt worked out once.
//!
//! For one number the alphabet the digits are written in depends only on the "lottery"
//! character, one of the alphabet's, so the alphabet shuffled for each lottery, and the one the
//! padding uses, are tables: encoding is then digit extraction without allocation, where the
//! general algorithm shuffles and allocates several times per id (it was a seventh of an
//! identity map's time). Checked against the `harsh` crate over every bucket id of a production
//! table and random numbers under several salts (see the tests).

const DEFAULT_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890";
const DEFAULT_SEPARATORS: &[u8] = b"cfhistuCFHISTU";
const SEPARATOR_DIV: f64 = 3.5;
const GUARD_DIV: f64 = 12.0;

/// The salt-dependent shuffle every Hashids step uses.
fn shuffle(values: &mut [u8], salt: &[u8]) {
    if salt.is_empty() {
        return;
    }
    let (mut v, mut p) = (0usize, 0usize);
    for i in (1..values.len()).rev() {
        v %= salt.len();
        let n = usize::from(salt[v]);
        p += n;
        let j = (n + v + p) % i;
        values.swap(i, j);
        v += 1;
    }
}

/// The tables of one lottery character.
#[derive(Debug, Clone)]
struct Lottery {
    /// The character itself, the first of the id before padding.
    character: u8,
    /// The alphabet the number's digits are written in.
    digits: Vec<u8>,
    /// The alphabet of the first padding round.
    padding: Vec<u8>,
}

/// A Hashids encoder of single numbers.
#[derive(Debug, Clone)]
pub(crate) struct Hashids {
    guards: Vec<u8>,
    min_length: usize,
    /// By the lottery character's index in the alphabet.
    lotteries: Vec<Lottery>,
}

impl Hashids {
    /// The encoder of the default alphabet under `salt`, writing at least `min_length`
    /// characters.
    pub(crate) fn new(salt: &[u8], min_length: usize) -> Self {
        let mut separators: Vec<u8> = DEFAULT_SEPARATORS
            .iter()
            .copied()
            .filter(|c| DEFAULT_ALPHABET.contains(c))
            .collect();
        let mut alphabet: Vec<u8> = DEFAULT_ALPHABET
            .iter()
            .copied()
            .filter(|c| !separators.contains(c))
            .collect();
        shuffle(&mut separators, salt);
        if separators.is_empty() || alphabet.len() as f64 / separators.len() as f64 > SEPARATOR_DIV
        {
            let length = match (alphabet.len() as f64 / SEPARATOR_DIV).ceil() as usize {
                1 => 2,
                n => n,
            };
            if length > separators.len() {
                let diff = length - separators.len();
                alphabet.drain(..diff);
            }
        }
        shuffle(&mut alphabet, salt);
        let guard_count = (alphabet.len() as f64 / GUARD_DIV).ceil() as usize;
        // (With the default alphabet there are always more than three characters left, so the
        // guards come from the alphabet, never from the separators.)
        let guards: Vec<u8> = alphabet.drain(..guard_count).collect();

        let lotteries = (0..alphabet.len())
            .map(|index| {
                let character = alphabet[index];
                let mut shuffle_salt = Vec::with_capacity(1 + salt.len() + alphabet.len());
                shuffle_salt.push(character);
                shuffle_salt.extend_from_slice(salt);
                shuffle_salt.extend_from_slice(&alphabet);
                let mut digits = alphabet.clone();
                shuffle(&mut digits, &shuffle_salt[..alphabet.len()]);
                let mut padding = digits.clone();
                shuffle(&mut padding, &digits);
                Lottery {
                    character,
                    digits,
                    padding,
                }
            })
            .collect();
        Self {
            guards,
            min_length,
            lotteries,
        }
    }

    /// Appends the Hashids of `value` to `out`.
    pub(crate) fn encode_into(&self, value: u64, out: &mut String) {
        let nhash = value % 100;
        let lottery = &self.lotteries[(nhash % self.lotteries.len() as u64) as usize];
        // Lottery character, digits (at most 16 for a u64 in a base of 16 or more), and up to
        // two guards.
        let mut buffer = [0u8; 20];
        let mut len = 0;
        buffer[len] = lottery.character;
        len += 1;
        let base = lottery.digits.len() as u64;
        let digits_start = len;
        let mut rest = value;
        loop {
            buffer[len] = lottery.digits[(rest % base) as usize];
            len += 1;
            rest /= base;
            if rest == 0 {
                break;
            }
        }
        buffer[digits_start..len].reverse();

        if len < self.min_length {
            let guard =
                self.guards[((nhash + u64::from(buffer[0])) % self.guards.len() as u64) as usize];
            buffer.copy_within(0..len, 1);
            buffer[0] = guard;
            len += 1;
            if len < self.min_length {
                let guard = self.guards
                    [((nhash + u64::from(buffer[2])) % self.guards.len() as u64) as usize];
                buffer[len] = guard;
                len += 1;
            }
        }
        let id = &buffer[..len];
        if id.len() >= self.min_length {
            push_ascii(out, id);
            return;
        }
        self.pad_into(lottery, id, out);
    }

    /// Pads `id` as Hashids does: the alphabet reshuffled, its halves around the id, the middle
    /// `min_length` characters kept; again if still too short.
    fn pad_into(&self, lottery: &Lottery, id: &[u8], out: &mut String) {
        let half = lottery.padding.len() / 2;
        let (left, right) = lottery.padding.split_at(half);
        let total = right.len() + id.len() + left.len();
        if total >= self.min_length {
            // The common case, one round: take the window without building the whole string.
            let marker = (total - self.min_length) / 2;
            let at = |k: usize| {
                if k < right.len() {
                    right[k]
                } else if k < right.len() + id.len() {
                    id[k - right.len()]
                } else {
                    left[k - right.len() - id.len()]
                }
            };
            out.extend((marker..marker + self.min_length).map(|k| char::from(at(k))));
            return;
        }
        // A minimum longer than the alphabet: more rounds, each reshuffling the alphabet.
        let mut alphabet = lottery.padding.clone();
        let mut padded: Vec<u8> = [right, id, left].concat();
        while padded.len() < self.min_length {
            let key = alphabet.clone();
            shuffle(&mut alphabet, &key);
            let (left, right) = alphabet.split_at(half);
            padded = [right, &padded, left].concat();
            let excess = padded.len().saturating_sub(self.min_length);
            if excess > 0 {
                let marker = excess / 2;
                padded = padded[marker..marker + self.min_length].to_vec();
            }
        }
        push_ascii(out, &padded);
    }
}

fn push_ascii(out: &mut String, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&b| char::from(b)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn reference(salt: &str, min_length: usize) -> harsh::Harsh {
        harsh::Harsh::builder()
            .salt(salt)
            .length(min_length)
            .build()
            .unwrap()
    }

    fn ours(h: &Hashids, value: u64) -> String {
        let mut out = String::new();
        h.encode_into(value, &mut out);
        out
    }

    #[test]
    fn every_production_bucket_id_matches_the_reference() {
        let salt = "HF6Qz42HBbVHINxhh191dB09BCuTWyBkNtrNicO4ZCw=";
        let (h, r) = (Hashids::new(salt.as_bytes(), 9), reference(salt, 9));
        for id in 0..(1u64 << 20) {
            assert_eq!(ours(&h, id), r.encode(&[id]), "{id}");
        }
    }

    #[test]
    fn any_number_salt_and_length_matches_the_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for salt in [
            "",
            "a",
            "id secret",
            "this is my salt",
            &"long salt ".repeat(20),
        ] {
            for min_length in [0, 1, 9, 20, 45, 100] {
                let (h, r) = (
                    Hashids::new(salt.as_bytes(), min_length),
                    reference(salt, min_length),
                );
                let edges = [0, 1, 99, 100, 43, 44, u64::from(u32::MAX), u64::MAX];
                let random = (0..2_000).map(|_| rng.random::<u64>() >> rng.random_range(0..64));
                for value in edges.into_iter().chain(random) {
                    assert_eq!(
                        ours(&h, value),
                        r.encode(&[value]),
                        "salt {salt:?}, min length {min_length}, value {value}"
                    );
                }
            }
        }
    }
}
