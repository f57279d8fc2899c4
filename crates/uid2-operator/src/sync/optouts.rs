//! Opt-outs in the snapshot: this operator's own applied at once, other operators' merged in by
//! each sync pass, and recent ones folded into the base of the index in the background.

use std::sync::Arc;

use super::{SyncError, fetch_optouts, publish, task_failed};
use crate::Operator;
use crate::optout::{COMPACTION_STEPS, OptOutBatch, OptOutIndex, OptOutIndexBuilder};
use crate::snapshot::Snapshot;

/// Applies the opt-outs committed up to `upto`, and folds this operator's own recent ones
/// into the recent run; returns whether there were new ones.
pub(super) async fn sync_optouts(op: &Operator, upto: i64) -> Result<bool, SyncError> {
    sync_optouts_merging(op, upto, |index, batch| index.with_batch(&batch)).await
}

/// [`sync_optouts`], merging with `merge` (a test makes it wait).
///
/// The merge copies the whole recent run, so it runs off the async runtime and without the
/// snapshot lock, from the index current when it starts: a logout meanwhile takes the lock and
/// publishes at once. The merged index is then rebased onto whatever the index became (see
/// [`OptOutIndex::rebased`]) under the lock. Passes run one at a time: a second one starting
/// from the same index would be rebased over the first's batch and drop it.
async fn sync_optouts_merging(
    op: &Operator,
    upto: i64,
    merge: impl FnOnce(&OptOutIndex, OptOutBatch) -> OptOutIndex + Send + 'static,
) -> Result<bool, SyncError> {
    let _one_pass = op.optout_sync.lock().await;
    let base = op.snapshot().optouts.clone();
    let after = base.last_seq();
    let fetched = if upto > after {
        fetch_optouts(op.store.as_ref(), after, upto).await?
    } else {
        OptOutIndexBuilder::default()
    };
    let new = !fetched.is_empty();
    if !new && base.local_len() == 0 {
        return Ok(false);
    }
    // Sorting a batch (a backlog may hold millions) and merging it both happen here.
    let (base, merged) = tokio::task::spawn_blocking(move || {
        let merged = merge(&base, fetched.finish_batch());
        (base, merged)
    })
    .await
    .map_err(task_failed("merging opt-outs"))?;
    publish(op, |snap| Snapshot {
        optouts: Arc::new(snap.optouts.rebased(&base, &merged)),
        ..snap.clone()
    })
    .await;
    Ok(new)
}

/// Folds the recent opt-outs into the base of the index, one step at a time, each merged off
/// the async runtime and published on its own.
pub(super) async fn compact(op: Arc<Operator>) {
    let Some(compaction) = op.snapshot().optouts.compaction() else {
        return;
    };
    for step in 0..COMPACTION_STEPS {
        // Only this task changes the base, so the current shards are the ones to merge into.
        let (index, plan) = (op.snapshot().optouts.clone(), compaction.clone());
        let Ok(shards) = tokio::task::spawn_blocking(move || plan.merge_step(&index, step)).await
        else {
            // The recent run still holds everything: nothing is lost, the next fold retries.
            tracing::error!("opt-out index compaction failed");
            return;
        };
        publish(&op, |snap| Snapshot {
            optouts: Arc::new(snap.optouts.with_compacted_shards(&shards)),
            ..snap.clone()
        })
        .await;
    }
    publish(&op, |snap| Snapshot {
        optouts: Arc::new(snap.optouts.compacted(&compaction)),
        ..snap.clone()
    })
    .await;
}

/// Applies an opt-out this operator just made durable to its snapshot at once.
pub(crate) async fn apply_local_optout(op: &Operator, record: &uid2_store::OptOutRecord) {
    // A copy of the local run only (the opt-outs since the last sync pass), cheap enough for
    // the request path; the sync pass and the compaction do the larger merges.
    publish(op, |snap| Snapshot {
        optouts: Arc::new(snap.optouts.with_local(std::slice::from_ref(record))),
        ..snap.clone()
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uid2_proto::salt::FirstLevelHash;

    use super::super::tests::operator;
    use super::*;

    /// A sync pass up to `upto`, started and held in its merge: returns it, and the sender
    /// that lets the merge go on.
    async fn held_pass(
        op: &Arc<Operator>,
        upto: i64,
    ) -> (
        tokio::task::JoinHandle<Result<bool, SyncError>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (merging_tx, merging_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let op = op.clone();
        let pass = tokio::spawn(async move {
            sync_optouts_merging(&op, upto, move |index, batch| {
                merging_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                index.with_batch(&batch)
            })
            .await
        });
        merging_rx.await.unwrap();
        (pass, release_tx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_logout_does_not_wait_for_a_sync_merge_and_survives_it() {
        let (_dir, op) = operator().await;
        let store = op.store().clone();
        // Another operator's opt-out, which the sync pass below fetches and merges.
        let theirs = [1u8; 32];
        store.append_optout(theirs, None, 1_000).await.unwrap();

        let upto = store.generations().await.unwrap().optout_seq;
        let (sync, release_tx) = held_pass(&op, upto).await;

        // While the merge is held, a logout on this operator publishes at once.
        let ours = store.append_optout([2u8; 32], None, 2_000).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), apply_local_optout(&op, &ours))
            .await
            .expect("the logout waited for the merge");
        assert_eq!(
            op.snapshot()
                .optouts
                .opted_out_at_ms(&FirstLevelHash([2u8; 32])),
            Some(2_000)
        );

        release_tx.send(()).unwrap();
        assert!(
            sync.await.unwrap().unwrap(),
            "the pass applied new opt-outs"
        );
        let optouts = op.snapshot().optouts.clone();
        for (flh, at) in [([1u8; 32], 1_000), ([2u8; 32], 2_000)] {
            assert_eq!(optouts.opted_out_at_ms(&FirstLevelHash(flh)), Some(at));
        }
        assert_eq!(optouts.last_seq(), upto);
        // The logout stays local until the next pass folds it in.
        assert_eq!(optouts.local_len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_passes_at_once_lose_nothing() {
        let (_dir, op) = operator().await;
        let store = op.store().clone();
        store.append_optout([3u8; 32], None, 3_000).await.unwrap();
        let first_upto = store.generations().await.unwrap().optout_seq;

        // The first pass holds its merge; meanwhile more opt-outs arrive and a second pass
        // (the loop, or a caller of sync_once) runs.
        let (first, release_tx) = held_pass(&op, first_upto).await;
        store.append_optout([4u8; 32], None, 4_000).await.unwrap();
        let second = {
            let op = op.clone();
            tokio::spawn(async move { op.sync_once().await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        release_tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();

        let optouts = op.snapshot().optouts.clone();
        for (flh, at) in [([3u8; 32], 3_000), ([4u8; 32], 4_000)] {
            assert_eq!(
                optouts.opted_out_at_ms(&FirstLevelHash(flh)),
                Some(at),
                "{flh:?}"
            );
        }
        assert_eq!(
            optouts.last_seq(),
            store.generations().await.unwrap().optout_seq
        );
    }
}
