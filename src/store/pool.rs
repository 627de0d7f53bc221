//! Chunk buffers recycled between decodes.
//!
//! An out-of-core run decodes thousands of chunks of a few MiB each. Allocated fresh and
//! freed on eviction, every decode faulted its pages in again (974 000 minor page faults at
//! 2048³, issue 21), and the allocator's per-thread arenas kept freed chunks they could not
//! give back, so the process held a third more than `--cache-bytes`. The cache instead hands
//! the buffer of a chunk it drops (evicted or released) to the next decode, through this
//! pool.
//!
//! The pool counts against the budget: it keeps a buffer only while the chunks held and the
//! buffers pooled fit `--cache-bytes` plus a small slack (two chunks, or a sixteenth of the
//! budget up to [`MAX_SLACK_BYTES`]), so memory stays the budget, and released chunks (which
//! leave the budget free) give their buffers to the decodes that fill it again.

use super::dtype::{DType, TypedBuf};

/// The most bytes the pool may hold beyond the budget (unless two chunks are more): the
/// buffers in transit between an eviction and the next decode.
pub const MAX_SLACK_BYTES: u64 = 16 << 20;

/// Free chunk buffers, most recently freed last.
#[derive(Default)]
pub struct BufferPool {
    free: Vec<TypedBuf>,
    /// Bytes of the buffers held (their capacity, what they cost memory).
    bytes: u64,
    /// Buffers handed out for a decode.
    pub reused: u64,
    /// Decodes that found no buffer of their type and allocated one.
    pub allocated: u64,
}

/// Bytes a buffer's allocation holds.
pub fn capacity_bytes(b: &TypedBuf) -> u64 {
    let cap = match b {
        TypedBuf::U8(v) => v.capacity(),
        TypedBuf::U16(v) => v.capacity(),
        TypedBuf::I16(v) => v.capacity(),
        TypedBuf::U32(v) => v.capacity(),
        TypedBuf::F32(v) => v.capacity(),
        TypedBuf::F64(v) => v.capacity(),
    };
    (cap * b.dtype().size()) as u64
}

impl BufferPool {
    /// Bytes the pooled buffers hold.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A free buffer of `dtype` (any length: the decode sizes it), counted as reused, or None
    /// (counted as an allocation: the decode allocates).
    pub fn take(&mut self, dtype: DType) -> Option<TypedBuf> {
        match self.free.iter().rposition(|b| b.dtype() == dtype) {
            Some(i) => {
                let b = self.free.swap_remove(i);
                self.bytes -= capacity_bytes(&b);
                self.reused += 1;
                Some(b)
            }
            None => {
                self.allocated += 1;
                None
            }
        }
    }

    /// Keeps `b` for a later decode if `room` bytes (what the budget leaves) hold it; frees
    /// it otherwise.
    pub fn give(&mut self, b: TypedBuf, room: u64) {
        let w = capacity_bytes(&b);
        if w > 0 && self.bytes + w <= room {
            self.bytes += w;
            self.free.push(b);
        }
    }

    /// Frees pooled buffers until at most `room` bytes are held.
    pub fn shrink_to(&mut self, room: u64) {
        while self.bytes > room {
            let Some(b) = self.free.pop() else { break };
            self.bytes -= capacity_bytes(&b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_by_type_within_the_room() {
        let mut p = BufferPool::default();
        assert!(p.take(DType::U16).is_none());
        p.give(TypedBuf::U16(vec![0; 100]), 1000);
        p.give(TypedBuf::U8(vec![0; 100]), 1000);
        assert_eq!(p.bytes(), 300);
        // No room: freed.
        p.give(TypedBuf::U16(vec![0; 400]), 1000);
        assert_eq!(p.bytes(), 300);
        assert!(p.take(DType::F32).is_none());
        assert_eq!(p.take(DType::U16).map(|b| b.len()), Some(100));
        assert_eq!((p.reused, p.allocated, p.bytes()), (1, 2, 100));
        p.shrink_to(0);
        assert_eq!(p.bytes(), 0);
    }
}
