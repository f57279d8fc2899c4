//! Conditional writes: a write may require that nothing of its kind changed since it was read
//! (a generation check), and may claim one period of a periodic job, in the same transaction, so
//! that a failed write never consumes the claim and a stale one never overwrites a newer state.

/// One period of a periodic job (a scheduled rotation), claimed by the write it accompanies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The job's name.
    pub job: String,
    /// Now (ms): recorded as the job's last run when the write commits.
    pub now_ms: i64,
    /// The job's period (ms): nobody may claim it again before this has passed.
    pub period_ms: i64,
}

impl Claim {
    /// Whether the job is due, given when it last ran.
    pub fn is_due(&self, last_ms: Option<i64>) -> bool {
        last_ms.is_none_or(|last| self.now_ms - last >= self.period_ms)
    }
}

/// What a conditional write requires of the store when it commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// The generation of the written kind must still be this one (compare-and-swap).
    pub generation: Option<i64>,
    /// This claim must be won.
    pub claim: Option<Claim>,
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional<T> {
    /// Written.
    Written(T),
    /// Not written: the kind changed since the expected generation; read again and retry.
    Stale,
    /// Not written: another caller ran the job within its period.
    Unclaimed,
}

/// A value read together with the generation of its kind, in one consistent read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The generation it was read at.
    pub generation: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_due_once_per_period() {
        let claim = Claim {
            job: "j".into(),
            now_ms: 1_000,
            period_ms: 500,
        };
        assert!(claim.is_due(None));
        assert!(claim.is_due(Some(500)));
        assert!(!claim.is_due(Some(501)));
    }
}
