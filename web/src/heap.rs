//! The widget's memory allocator: power-of-two size classes, each with a free list, carved from
//! memory the module grows. Rust's default on wasm (dlmalloc) costs about 3 KB of the widget's
//! 40 KB gzip budget; this costs a few hundred bytes. The widget's heap stays in the tens of
//! kilobytes (a few renders of HTML, a list of links), so the up-to-half a class can waste does
//! not matter, and freed blocks are reused by the next request of the same class.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

const PAGE: usize = 65536;

struct State {
    /// Head of each class's free list (class `k`: blocks of `2^k` bytes); a free block holds
    /// the address of the next.
    free: [*mut u8; 32],
    /// Fresh memory not yet handed out: `next..end`.
    next: usize,
    end: usize,
}

/// `grow(pages)` adds pages to memory and returns the index of the first, or `usize::MAX`.
pub struct Heap(UnsafeCell<State>, fn(usize) -> usize);

// wasm32-unknown-unknown without the atomics feature has one thread: nothing runs concurrently.
unsafe impl Sync for Heap {}

impl Heap {
    pub const fn new(grow: fn(usize) -> usize) -> Self {
        Heap(
            UnsafeCell::new(State {
                free: [null_mut(); 32],
                next: 0,
                end: 0,
            }),
            grow,
        )
    }
}

/// The class of a request: the smallest power of two that holds it and its alignment (at least
/// a pointer, which a free block stores).
fn class(layout: Layout) -> usize {
    let size = layout.size().max(layout.align()).max(8);
    size.next_power_of_two().trailing_zeros() as usize
}

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > 1 << 30 {
            return null_mut();
        }
        let s = &mut *self.0.get();
        let k = class(layout);
        let head = s.free[k];
        if !head.is_null() {
            s.free[k] = *(head as *mut *mut u8);
            return head;
        }
        let size = 1usize << k;
        // Every block of a class is aligned to its size (pages, past one), so a freed block
        // suits any later request of the class, whatever its alignment.
        let align = size.min(PAGE);
        let mut start = (s.next + align - 1) & !(align - 1);
        if start + size > s.end {
            let pages = (size + align).div_ceil(PAGE);
            let old = (self.1)(pages);
            if old == usize::MAX {
                return null_mut();
            }
            // The new pages extend the fresh range when it ended at the old top (on wasm it
            // always does: only this allocator grows memory).
            if s.end != old * PAGE {
                s.next = old * PAGE;
            }
            s.end = (old + pages) * PAGE;
            start = (s.next + align - 1) & !(align - 1);
        }
        s.next = start + size;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let s = &mut *self.0.get();
        let k = class(layout);
        *(ptr as *mut *mut u8) = s.free[k];
        s.free[k] = ptr;
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, layout.align());
        if new_size <= 1 << 30 && class(new) == class(layout) {
            return ptr;
        }
        let out = self.alloc(new);
        if !out.is_null() {
            core::ptr::copy_nonoverlapping(ptr, out, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Pages handed out from one big aligned buffer, standing in for wasm memory.
        static ARENA: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }
    const ARENA_PAGES: usize = 1024;

    fn fake_grow(pages: usize) -> usize {
        ARENA.with(|arena| {
            let (mut top, mut end) = arena.get();
            if end == 0 {
                let layout = Layout::from_size_align(ARENA_PAGES * PAGE, PAGE).unwrap();
                top = unsafe { std::alloc::alloc(layout) } as usize;
                end = top + ARENA_PAGES * PAGE;
            }
            if top + pages * PAGE > end {
                return usize::MAX;
            }
            arena.set((top + pages * PAGE, end));
            top / PAGE
        })
    }

    /// A deterministic mix of allocations, frees and reallocations of many sizes and
    /// alignments: every block is aligned, none overlaps another live one, and contents survive
    /// reallocation.
    #[test]
    fn blocks_are_aligned_disjoint_and_keep_their_bytes() {
        let heap = Heap::new(fake_grow);
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut seed = 0x2545_f491_u32;
        let mut rand = |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed % n
        };
        for step in 0..20_000u32 {
            let choice = rand(10);
            if (choice < 5 || live.is_empty()) && live.len() < 300 {
                let size = [1, 7, 8, 24, 100, 4096, 70_000][rand(7) as usize] + rand(5) as usize;
                let align = 1usize << rand(7);
                let layout = Layout::from_size_align(size, align).unwrap();
                let p = unsafe { heap.alloc(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "aligned to {align}");
                let tag = (step % 251) as u8;
                unsafe { p.write_bytes(tag, size) };
                live.push((p, layout, tag));
            } else if choice < 8 {
                let (p, layout, tag) = live.swap_remove(rand(live.len() as u32) as usize);
                assert!((0..layout.size()).all(|i| unsafe { *p.add(i) } == tag));
                unsafe { heap.dealloc(p, layout) };
            } else {
                let i = rand(live.len() as u32) as usize;
                let (p, layout, tag) = live[i];
                let new_size = 1 + rand(9000) as usize;
                let q = unsafe { heap.realloc(p, layout, new_size) };
                assert!(!q.is_null());
                let kept = layout.size().min(new_size);
                assert!(
                    (0..kept).all(|j| unsafe { *q.add(j) } == tag),
                    "kept its bytes"
                );
                unsafe { q.write_bytes(tag, new_size) };
                live[i] = (
                    q,
                    Layout::from_size_align(new_size, layout.align()).unwrap(),
                    tag,
                );
            }
            if step % 1000 == 0 {
                let mut spans: Vec<(usize, usize)> = live
                    .iter()
                    .map(|(p, l, _)| (*p as usize, *p as usize + l.size()))
                    .collect();
                spans.sort();
                assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "no overlap");
            }
        }
    }

    #[test]
    fn a_freed_block_is_reused_and_an_impossible_request_fails() {
        let heap = Heap::new(fake_grow);
        let layout = Layout::from_size_align(40, 8).unwrap();
        let a = unsafe { heap.alloc(layout) };
        unsafe { heap.dealloc(a, layout) };
        assert_eq!(
            unsafe { heap.alloc(Layout::from_size_align(33, 4).unwrap()) },
            a
        );
        let huge = Layout::from_size_align(3 << 30, 8).unwrap();
        assert!(unsafe { heap.alloc(huge) }.is_null());
    }
}
