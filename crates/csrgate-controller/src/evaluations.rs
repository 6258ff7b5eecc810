//! Slots for evaluating decisions on the blocking pool, shared fairly between signers.
//!
//! An evaluation may run up to its budget (about a second per policy, see
//! `csrgate_policy::RUNTIME_COST_BUDGET`), so it runs on tokio's blocking pool, never on a
//! runtime worker where it would stall `/healthz`, lease renewal and the watches. How many
//! evaluate at once is bounded by [`EvaluationSlots`]: a fixed number of slots, of which one
//! signer's CSRs may hold all but one. A slow policy (it covers some signers) then takes the
//! CPU only from the CSRs of its own signers, which wait for their signer's share; other
//! signers' CSRs always find a slot. (Their place in the work queue is another matter: the
//! queue is first come, first served, so a burst of one signer's CSRs, each waiting for its
//! share, can occupy every worker ahead of them.) The threads are bounded by the work
//! queue's workers (`--concurrency`, at most `MAX_CONCURRENCY`), not by the slots.
//!
//! A slot stands for a core, so an evaluation gives it back while it waits for the API
//! server (a SubjectAccessReview of the `authorizer` variable, see [`HeldSlot`]): with one
//! signer's share at one slot on two cores, holding it through the round trip let one
//! kubelet client CSR be decided at a time, each waiting a SubjectAccessReview, where
//! kube-controller-manager's approver has five workers asking at once
//! (`csrgate-bench real`'s KCM comparison, bench/NOTES.md).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds the decisions evaluated at once, in total and per signer.
pub struct EvaluationSlots {
    /// All slots.
    total: Arc<Semaphore>,
    /// How many of them one signer may hold.
    per_signer: usize,
    /// Each signer's share, while some of its CSRs are evaluated or waiting; an idle
    /// signer's entry is dropped, so requestors inventing signer names cannot grow it.
    signers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A held slot; dropping it frees the slot.
pub struct Slot {
    _total: Option<OwnedSemaphorePermit>,
    _signer: Option<OwnedSemaphorePermit>,
}

impl EvaluationSlots {
    /// `slots` slots in total (at least 2, so that one signer holding all it may still
    /// leaves one for the others).
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(2);
        Self {
            total: Arc::new(Semaphore::new(slots)),
            per_signer: slots - 1,
            signers: Mutex::new(HashMap::new()),
        }
    }

    /// One slot per CPU: evaluation never takes more threads than there are cores.
    pub fn per_cpu() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
    }

    /// Waits for a slot for a CSR of `signer`: first the signer's share, then a slot.
    pub async fn acquire(&self, signer: &str) -> Slot {
        let share = {
            // A poisoned lock only means a panic elsewhere mid-insert; the map is usable.
            let mut signers = self.signers.lock().unwrap_or_else(PoisonError::into_inner);
            signers.retain(|_, share| Arc::strong_count(share) > 1);
            Arc::clone(
                signers
                    .entry(signer.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_signer))),
            )
        };
        // The semaphores are never closed, so acquiring only waits.
        let signer_permit = share.acquire_owned().await.ok();
        let total_permit = Arc::clone(&self.total).acquire_owned().await.ok();
        Slot {
            _total: total_permit,
            _signer: signer_permit,
        }
    }
}

/// The slot of one evaluation on the blocking pool, given back while it waits for I/O.
pub struct HeldSlot {
    slots: Arc<EvaluationSlots>,
    signer: String,
    slot: Mutex<Option<Slot>>,
}

impl HeldSlot {
    /// Waits for a slot for an evaluation of a CSR of `signer` (see
    /// [`EvaluationSlots::acquire`]).
    pub async fn acquire(slots: Arc<EvaluationSlots>, signer: &str) -> Self {
        let slot = slots.acquire(signer).await;
        Self {
            slots,
            signer: signer.to_owned(),
            slot: Mutex::new(Some(slot)),
        }
    }

    /// Runs `wait` to completion on `runtime` from the evaluating thread, without the slot:
    /// it is given back first and taken again (behind whoever waits for one) once `wait` is
    /// over, so the evaluation goes on holding a slot as before.
    ///
    /// # Panics
    /// As [`tokio::runtime::Handle::block_on`], when called from an async task: call it on
    /// the blocking pool or a thread outside the runtime.
    pub fn released_while<F: Future>(
        &self,
        runtime: &tokio::runtime::Handle,
        wait: F,
    ) -> F::Output {
        self.release();
        runtime.block_on(async {
            let output = wait.await;
            let slot = self.slots.acquire(&self.signer).await;
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(slot);
            output
        })
    }

    /// Gives the slot back now (the evaluation is over).
    pub fn release(&self) {
        drop(
            self.slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_busy_signer_leaves_a_slot_for_the_others() {
        let slots = EvaluationSlots::new(3);
        let _a1 = slots.acquire("a").await;
        let _a2 = slots.acquire("a").await;
        // A third for signer a waits, though a slot is free ...
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.acquire("a"))
                .await
                .is_err()
        );
        // ... which signer b gets at once.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.acquire("b"))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn idle_signers_are_forgotten() {
        let slots = EvaluationSlots::new(2);
        for i in 0..100 {
            drop(slots.acquire(&format!("signer-{i}")).await);
        }
        let _last = slots.acquire("last").await;
        assert_eq!(slots.signers.lock().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slot_is_given_back_while_its_evaluation_waits_and_taken_again_after() {
        // Two slots: signer a may hold one.
        let slots = Arc::new(EvaluationSlots::new(2));
        let held = Arc::new(HeldSlot::acquire(Arc::clone(&slots), "a").await);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.acquire("a"))
                .await
                .is_err(),
            "signer a's share is held"
        );
        let (waiting, wait) = tokio::sync::oneshot::channel::<()>();
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Handle::current();
        let evaluation = {
            let held = Arc::clone(&held);
            tokio::task::spawn_blocking(move || {
                held.released_while(&runtime, async {
                    drop(waiting);
                    let _ = answered.await;
                });
            })
        };
        let _ = wait.await;
        // While the first waits, a second evaluation of signer a gets the slot ...
        let second = tokio::time::timeout(Duration::from_secs(5), slots.acquire("a"))
            .await
            .expect("the waiting evaluation gave its slot back");
        drop(answer);
        // ... and the first, its wait over, waits for it again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!evaluation.is_finished());
        drop(second);
        evaluation.await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slots.acquire("a"))
                .await
                .is_err(),
            "the first evaluation holds the slot again"
        );
        held.release();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), slots.acquire("a"))
                .await
                .is_ok()
        );
    }
}
