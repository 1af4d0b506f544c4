// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Boxing a large future without copying it.
//!
//! `Box::pin(fut)` (what `async_trait` does for every call) builds the future on the stack and
//! then copies all of it into the new box: as many bytes as the future's largest state, however
//! little of it the initial state uses. [`pin_in_place`] allocates the box first and builds the
//! future in it, which lets the optimiser write the future's few initial fields straight into the
//! heap instead of copying the whole layout.

use std::future::Future;
use std::pin::Pin;

/// A boxed, `Send` future, as `async_trait` methods return.
pub(crate) type BoxedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Boxes the future `make` returns, allocating the box before `make` runs.
///
/// Same result as `Box::pin(make())`; the difference is only the order of the allocation and the
/// construction, which decides whether the future is copied into its box in full.
#[inline(always)]
pub(crate) fn pin_in_place<'a, F>(make: impl FnOnce() -> F) -> BoxedFuture<'a, F::Output>
where
    F: Future + Send + 'a,
{
    let mut slot = Box::<F>::new_uninit();
    slot.write(make());
    // SAFETY: `write` just initialised the slot.
    Box::into_pin(unsafe { slot.assume_init() })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    /// Allocations of at least `TRACKED` bytes made by this thread, counted by the test binary's
    /// global allocator (per thread, so tests running beside this one do not disturb it).
    const TRACKED: usize = 16 * 1024;
    thread_local! {
        static LARGE_ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    /// Allocations of any size made by this thread so far (reallocations included), for the
    /// tests of other modules of this crate.
    pub(crate) fn allocations() -> usize {
        ALLOCATIONS.with(Cell::get)
    }

    fn large_allocations() -> usize {
        LARGE_ALLOCATIONS.with(Cell::get)
    }

    struct Counting;
    // SAFETY: forwards to the system allocator; the counter is a const-initialised thread local
    // (no allocation when it is touched).
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            if layout.size() >= TRACKED {
                let _ = LARGE_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            }
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            std::alloc::System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            std::alloc::System.dealloc(ptr, layout)
        }
        unsafe fn realloc(
            &self,
            ptr: *mut u8,
            layout: std::alloc::Layout,
            new_size: usize,
        ) -> *mut u8 {
            if new_size >= TRACKED {
                let _ = LARGE_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            }
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            std::alloc::System.realloc(ptr, layout, new_size)
        }
    }
    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// A future whose largest state holds a `TRACKED`-byte local across an `.await`.
    async fn large(seed: u8) -> u8 {
        let mut local = [seed; TRACKED];
        tokio::task::yield_now().await;
        local[TRACKED - 1] = local[0].wrapping_add(1);
        local[TRACKED - 1]
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_box_is_allocated_before_the_future_is_built() {
        let mut allocated_when_built = None;
        let fut = pin_in_place(|| {
            allocated_when_built = Some(large_allocations());
            large(41)
        });
        let after = large_allocations();
        assert!(std::mem::size_of_val(&*fut) >= TRACKED);
        // The box of the future (the only allocation this large) existed when `make` ran.
        assert_eq!(allocated_when_built, Some(after));
        assert!(after >= 1);
        assert_eq!(fut.await, 42);
    }
}
