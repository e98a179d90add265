//! Memory for snapshot receptions: one budget per node, shared by every reception and
//! every partial copy kept for resumption, and the buffer a reception fills.
//!
//! A snapshot header is a peer's claim. The receiver charges the claimed size to the
//! budget when it admits a transfer (so that an admitted transfer can always complete,
//! and a transfer that cannot fit is refused before any of it is sent), but it allocates
//! only as bytes arrive: the buffer starts small and at most doubles, never beyond the
//! claimed size, so a header that claims a gigabyte and sends nothing costs a few
//! kilobytes. A partial copy kept for resumption is charged only for the memory it holds,
//! and charged for the whole snapshot again when the transfer resumes.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The first allocation of a reception buffer: the most a header alone can make the
/// receiver allocate.
pub(crate) const INITIAL_CAPACITY: usize = 64 << 10;

/// The node-wide budget, in bytes, for snapshot data held by the transport.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: u64,
    used: Mutex<u64>,
}

/// Why a reservation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{wanted} more bytes do not fit in the snapshot receive memory budget ({used} of {limit} bytes in use)"
)]
pub(crate) struct BudgetExceeded {
    /// The bytes asked for.
    pub(crate) wanted: u64,
    /// The bytes reserved by others at the time.
    pub(crate) used: u64,
    /// The budget.
    pub(crate) limit: u64,
}

impl MemoryBudget {
    pub(crate) fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: Mutex::new(0),
        })
    }

    /// Bytes reserved now.
    pub(crate) fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `bytes` if they fit; the reservation is returned when dropped.
    pub(crate) fn try_reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, BudgetExceeded> {
        self.take(bytes)?;
        Ok(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    fn take(&self, bytes: u64) -> Result<(), BudgetExceeded> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        match used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                *used = total;
                Ok(())
            }
            _ => Err(BudgetExceeded {
                wanted: bytes,
                used: *used,
                limit: self.limit,
            }),
        }
    }

    fn give_back(&self, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(bytes);
    }
}

/// Bytes reserved from a [`MemoryBudget`], returned to it on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Reservation {
    /// The bytes reserved.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows the reservation to `bytes` (no change if it is that large already).
    pub(crate) fn try_grow_to(&mut self, bytes: u64) -> Result<(), BudgetExceeded> {
        if bytes > self.bytes {
            self.budget.take(bytes - self.bytes)?;
            self.bytes = bytes;
        }
        Ok(())
    }

    /// Shrinks the reservation to `bytes` (no change if it is that small already).
    pub(crate) fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.budget.give_back(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Why bytes could not be added to a [`SnapshotBuffer`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BufferError {
    /// The peer sent more than the size it announced.
    #[error("the sender sent more than the snapshot's size of {total} bytes")]
    Overrun {
        /// The announced size.
        total: usize,
    },
    /// The allocator refused to grow the buffer.
    #[error("cannot allocate {bytes} bytes for the snapshot")]
    Allocation {
        /// The capacity asked for.
        bytes: usize,
    },
}

/// The bytes of one snapshot being received, charged to the node's budget for the whole
/// announced size, allocated only as data arrives.
pub(crate) struct SnapshotBuffer {
    data: Vec<u8>,
    total: usize,
    reservation: Reservation,
}

impl std::fmt::Debug for SnapshotBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuffer")
            .field("len", &self.data.len())
            .field("capacity", &self.data.capacity())
            .field("total", &self.total)
            .field("charged", &self.reservation.bytes)
            .finish()
    }
}

impl SnapshotBuffer {
    /// An empty buffer for a snapshot of `total` bytes, or the budget's refusal. Allocates
    /// nothing yet.
    pub(crate) fn new(budget: &Arc<MemoryBudget>, total: usize) -> Result<SnapshotBuffer, BudgetExceeded> {
        let reservation = budget.try_reserve(total as u64)?;
        Ok(SnapshotBuffer {
            data: Vec::new(),
            total,
            reservation,
        })
    }

    /// Bytes received.
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Bytes allocated.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Bytes charged to the budget.
    #[cfg(test)]
    pub(crate) fn charged(&self) -> u64 {
        self.reservation.bytes()
    }

    /// Appends received bytes. The allocation grows by doubling from
    /// [`INITIAL_CAPACITY`], never beyond the announced size, so it stays within twice the
    /// bytes received (or the initial capacity).
    pub(crate) fn extend(&mut self, bytes: &[u8]) -> Result<(), BufferError> {
        let total = self.total;
        let need = self
            .data
            .len()
            .checked_add(bytes.len())
            .filter(|&need| need <= total)
            .ok_or(BufferError::Overrun { total })?;
        if need > self.data.capacity() {
            let target = need
                .max(self.data.capacity().saturating_mul(2))
                .max(INITIAL_CAPACITY)
                .min(total);
            self.data
                .try_reserve_exact(target - self.data.len())
                .map_err(|_| BufferError::Allocation { bytes: target })?;
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Keeps what was received for a later resumption, charged only for the memory it
    /// holds.
    pub(crate) fn park(&mut self) {
        self.data.shrink_to_fit();
        self.reservation.shrink_to(self.data.capacity() as u64);
    }

    /// Charges the whole snapshot again, to resume receiving it.
    pub(crate) fn unpark(&mut self) -> Result<(), BudgetExceeded> {
        self.reservation.try_grow_to(self.total as u64)
    }

    /// The received bytes, and the reservation to hold for as long as the transport holds
    /// them.
    pub(crate) fn into_bytes(self) -> (Bytes, Reservation) {
        (Bytes::from(self.data), self.reservation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_returned_on_drop() {
        let budget = MemoryBudget::new(100);
        let a = budget.try_reserve(60).unwrap();
        let err = budget.try_reserve(41).unwrap_err();
        assert_eq!(
            err,
            BudgetExceeded {
                wanted: 41,
                used: 60,
                limit: 100
            }
        );
        let mut b = budget.try_reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        assert!(budget.try_reserve(1).is_err());
        assert!(budget.try_reserve(u64::MAX).is_err(), "no overflow");
        b.shrink_to(10);
        assert_eq!(budget.used(), 70);
        assert!(b.try_grow_to(41).is_err());
        b.try_grow_to(40).unwrap();
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_huge_claim_allocates_only_what_arrives() {
        // A header claiming 4 GiB (admitted by a budget that large, which costs nothing by
        // itself): the buffer allocates nothing until data arrives, then a small amount.
        let budget = MemoryBudget::new(8 << 30);
        let mut buffer = SnapshotBuffer::new(&budget, 4 << 30).unwrap();
        assert_eq!(buffer.capacity(), 0);
        buffer.extend(&[7; 100]).unwrap();
        assert_eq!(buffer.len(), 100);
        assert_eq!(buffer.capacity(), INITIAL_CAPACITY);
        // Growth stays within twice the bytes received.
        for _ in 0..100 {
            buffer.extend(&[1; 10_000]).unwrap();
            assert!(buffer.capacity() <= (2 * buffer.len()).max(INITIAL_CAPACITY));
        }
        assert_eq!(budget.used(), 4 << 30, "the whole claim is charged");
        drop(buffer);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_claim_beyond_the_budget_is_refused_before_allocating() {
        let budget = MemoryBudget::new(1 << 20);
        let _held = budget.try_reserve(1 << 19).unwrap();
        let err = SnapshotBuffer::new(&budget, (1 << 19) + 1).unwrap_err();
        assert_eq!(err.used, 1 << 19);
        assert!(err.to_string().contains("memory budget"), "{err}");
    }

    #[test]
    fn the_buffer_never_exceeds_the_announced_size() {
        let budget = MemoryBudget::new(1 << 20);
        let mut buffer = SnapshotBuffer::new(&budget, 100_000).unwrap();
        for _ in 0..10 {
            buffer.extend(&[3; 10_000]).unwrap();
        }
        assert_eq!(buffer.capacity(), 100_000, "the last growth stops at the size");
        assert_eq!(buffer.extend(&[1]), Err(BufferError::Overrun { total: 100_000 }));
        let (bytes, reservation) = buffer.into_bytes();
        assert_eq!(bytes.len(), 100_000);
        assert_eq!(reservation.bytes(), 100_000);
        drop(reservation);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_parked_copy_is_charged_for_what_it_holds() {
        let budget = MemoryBudget::new(1 << 20);
        let mut buffer = SnapshotBuffer::new(&budget, 1 << 20).unwrap();
        buffer.extend(&[5; 1000]).unwrap();
        buffer.park();
        assert_eq!(buffer.charged(), buffer.capacity() as u64);
        assert!(budget.used() <= INITIAL_CAPACITY as u64);
        // Another transfer may use the rest meanwhile, and then the resumption does not fit.
        let other = budget.try_reserve((1 << 20) - budget.used()).unwrap();
        assert!(buffer.unpark().is_err());
        drop(other);
        buffer.unpark().unwrap();
        assert_eq!(budget.used(), 1 << 20);
        assert_eq!(buffer.len(), 1000);
    }
}
