//! Walker/Vose alias table: O(1) weighted sampling from two random numbers (here: the two halves
//! of one 64-bit draw), built in O(n) with exact integer arithmetic.

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Accept this slot when the low 32 random bits are below `accept` (≤ 2³²).
    accept: u64,
    alias: u32,
}

/// Weighted sampling over positions `0..n`.
#[derive(Debug, Default)]
pub(crate) struct AliasTable {
    slots: Vec<Slot>,
}

impl AliasTable {
    /// Builds the table; weights of 0 are never drawn unless every weight is 0 (then empty).
    pub(crate) fn new(weights: &[u64]) -> AliasTable {
        let n = weights.len();
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        if n == 0 || total == 0 || n > u32::MAX as usize {
            return AliasTable::default();
        }
        // Scaled so that the mean slot holds exactly `total`.
        let mut scaled: Vec<u128> = weights.iter().map(|&w| u128::from(w) * n as u128).collect();
        let mut slots = vec![
            Slot {
                accept: 1 << 32,
                alias: 0,
            };
            n
        ];
        let mut small: Vec<usize> = Vec::new();
        let mut large: Vec<usize> = Vec::new();
        for (i, &p) in scaled.iter().enumerate() {
            if p < total {
                small.push(i);
            } else {
                large.push(i);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            slots[s] = Slot {
                accept: u64::try_from((scaled[s] << 32) / total).unwrap_or(1 << 32),
                alias: l as u32,
            };
            scaled[l] -= total - scaled[s];
            if scaled[l] < total {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left (rounding) accepts itself.
        AliasTable { slots }
    }

    /// Number of positions.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Draws a position from 64 random bits; `None` only for an empty table.
    #[inline]
    pub(crate) fn sample(&self, r: u64) -> Option<usize> {
        let i = super::rng::below((r >> 32) as u32, self.slots.len());
        let slot = self.slots.get(i)?;
        Some(if (r & 0xffff_ffff) < slot.accept {
            i
        } else {
            slot.alias as usize
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exact_on_a_grid() {
        // Enumerate a grid of draws: frequencies match weights almost exactly.
        let t = AliasTable::new(&[5, 1, 0, 2]);
        let mut counts = [0u64; 4];
        let steps = 1u64 << 12;
        for hi in 0..steps {
            for lo in 0..steps {
                let r = ((hi << 20) << 32) | (lo << 20);
                counts[t.sample(r).unwrap()] += 1;
            }
        }
        let total = (steps * steps) as f64;
        assert!(
            (counts[0] as f64 / total - 5.0 / 8.0).abs() < 1e-3,
            "{counts:?}"
        );
        assert!(
            (counts[1] as f64 / total - 1.0 / 8.0).abs() < 1e-3,
            "{counts:?}"
        );
        assert_eq!(counts[2], 0);
        assert!(
            (counts[3] as f64 / total - 2.0 / 8.0).abs() < 1e-3,
            "{counts:?}"
        );
    }

    #[test]
    fn empty_and_zero() {
        assert!(AliasTable::new(&[]).sample(7).is_none());
        assert!(AliasTable::new(&[0, 0]).sample(7).is_none());
        assert_eq!(AliasTable::new(&[3]).sample(u64::MAX), Some(0));
    }
}
