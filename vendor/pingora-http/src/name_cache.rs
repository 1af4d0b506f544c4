// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! The field names seen last on this thread, kept ready to clone.
//!
//! `HeaderName::from_bytes` copies a name that is not one of `http`'s standard names into a new
//! `Bytes`, and storing it in both of a header's maps (values and original case) clones it,
//! which promotes that `Bytes` to shared storage: two allocations for every such field of every
//! head (`X-Request-Id`, `Sec-Fetch-Mode`, an origin's `X-Served-By`, ...). This cache keeps the
//! names seen last, as they were written, one per slot of a small direct-mapped table (64 slots
//! of 48 bytes and the name, per thread), already shared, so a name seen before costs a
//! comparison and a reference count instead; a standard name costs about what parsing it did.
//! A miss costs what it did, plus the copy into the slot.

use std::cell::RefCell;

use http::header::{HeaderName, InvalidHeaderName};

/// Slots in each thread's table (a power of two).
const SLOTS: usize = 64;
/// Longer names are not cached.
const MAX_NAME: usize = 48;

/// A name as it was written (its case included) and what it parsed to.
struct Slot {
    raw: [u8; MAX_NAME],
    len: usize,
    name: HeaderName,
}

thread_local! {
    static NAMES: RefCell<[Option<Slot>; SLOTS]> =
        const { RefCell::new([const { None }; SLOTS]) };
}

/// `HeaderName::from_bytes(raw)`, from this thread's cache when the slot of `raw` holds the same
/// bytes (a client or an origin writes its names the same way every time).
pub(crate) fn header_name(raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    let (Some(&first), Some(&last)) = (raw.first(), raw.last()) else {
        return HeaderName::from_bytes(raw);
    };
    if raw.len() > MAX_NAME {
        return HeaderName::from_bytes(raw);
    }
    let slot = slot_of(raw.len(), first, last);
    let cached = NAMES.try_with(|names| {
        let mut names = names.try_borrow_mut().ok()?;
        let entry = &mut names[slot];
        if let Some(hit) = entry {
            if hit.len == raw.len() && hit.raw[..hit.len] == *raw {
                return Some(Ok(hit.name.clone()));
            }
        }
        let parsed = HeaderName::from_bytes(raw);
        if let Ok(name) = &parsed {
            let mut copy = [0; MAX_NAME];
            copy[..raw.len()].copy_from_slice(raw);
            *entry = Some(Slot {
                raw: copy,
                len: raw.len(),
                name: name.clone(),
            });
        }
        Some(parsed)
    });
    match cached {
        Ok(Some(result)) => result,
        // The thread is exiting, or the table is in use further up this thread's stack.
        _ => HeaderName::from_bytes(raw),
    }
}

/// The slot of a name of `len` bytes from `first` to `last`: cheap, and the same for any ASCII
/// case of it (`| 0x20` lowercases a letter and leaves the other token characters distinct).
fn slot_of(len: usize, first: u8, last: u8) -> usize {
    let mix = len
        .wrapping_mul(0x9e37)
        .wrapping_add(usize::from(first | 0x20).wrapping_mul(0x2d))
        .wrapping_add(usize::from(last | 0x20));
    mix & (SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_what_from_bytes_makes() {
        let long = vec![b'x'; MAX_NAME + 1];
        let longest = vec![b'y'; MAX_NAME];
        let names: [&[u8]; 15] = [
            b"host",
            b"Content-Length",
            b"x-origin",
            b"X-Origin",
            b"X-ORIGIN",
            b"sec-fetch-mode",
            b"x_under_score",
            b"x-caf\xc3\xa9",
            b"bad name",
            b"bad:name",
            b"",
            b"x-\x7f",
            b"~!#$%&'*+.^`|",
            &long,
            &longest,
        ];
        // Twice: a miss, then (for a valid name) a hit.
        for _ in 0..2 {
            for raw in names {
                match (header_name(raw), HeaderName::from_bytes(raw)) {
                    (Ok(cached), Ok(parsed)) => assert_eq!(cached, parsed, "{raw:?}"),
                    (Err(_), Err(_)) => {}
                    (cached, parsed) => panic!("{raw:?}: {cached:?} against {parsed:?}"),
                }
            }
        }
    }

    #[test]
    fn a_name_seen_before_shares_its_bytes() {
        let first = header_name(b"X-Served-By").unwrap();
        let again = header_name(b"X-Served-By").unwrap();
        assert_eq!(first, "x-served-by");
        assert_eq!(first.as_str().as_ptr(), again.as_str().as_ptr(), "copied again");
    }

    #[test]
    fn names_that_share_a_slot_take_turns() {
        let names: Vec<String> = (0..4 * SLOTS).map(|i| format!("x-field-{i}")).collect();
        for _ in 0..2 {
            for name in &names {
                assert_eq!(header_name(name.as_bytes()).unwrap(), name.as_str());
            }
        }
    }

    #[test]
    fn the_slot_does_not_depend_on_case() {
        assert_eq!(slot_of(12, b'X', b'd'), slot_of(12, b'x', b'D'));
        let (a, b) = (header_name(b"X-Case").unwrap(), header_name(b"x-case").unwrap());
        assert_eq!(a, b);
        // Written the first way again: it took the slot back, with the same name.
        assert_eq!(header_name(b"X-Case").unwrap(), a);
    }
}
