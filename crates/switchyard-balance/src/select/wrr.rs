//! Smooth weighted round robin, lock-free.
//!
//! NGINX's smooth WRR walks every server per pick under a lock. Here the candidates sit at the
//! leaves of a balanced binary tree whose nodes know the total weight on each side. A pick takes
//! one ticket `k` from an atomic counter and descends: a node with side weights `L` and `R`
//! (`T = L + R`) sends its `k`-th visit left iff `⌊(k+1)L/T + ½⌋ − ⌊kL/T + ½⌋ = 1`, the
//! best-balanced (Sturmian) split of `T` visits into `L` and `R`, and hands the child its own
//! visit number. Each server thus receives exactly its weight's share of every period of
//! `Σw` picks, spread as evenly as a two-way split allows at each level: weights 5:1 give
//! `a a a b a a`, as NGINX does. Cost: one atomic add plus `⌈log₂ n⌉` integer divisions.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{fallback, PickContext, Selector};
use crate::pool::Server;

#[derive(Debug, Clone, Copy)]
enum Node {
    Leaf(usize),
    Split {
        left_weight: u64,
        total: u64,
        left: u32,
        right: u32,
    },
}

/// Smooth weighted round robin over a fixed candidate set.
#[derive(Debug)]
pub struct SmoothWrr {
    nodes: Vec<Node>,
    root: Option<u32>,
    total: u64,
    ticket: AtomicU64,
    candidates: Vec<usize>,
}

impl SmoothWrr {
    /// Builds the tree over the candidates with a positive weight.
    pub fn new(servers: &[Server], candidates: &[usize]) -> Self {
        let weighted: Vec<(usize, u64)> = candidates
            .iter()
            .map(|&i| (i, u64::from(servers[i].spec.weight)))
            .filter(|&(_, w)| w > 0)
            .collect();
        let mut nodes = Vec::with_capacity(weighted.len() * 2);
        let root = build(&weighted, &mut nodes);
        SmoothWrr {
            total: weighted.iter().map(|&(_, w)| w).sum(),
            nodes,
            root,
            ticket: AtomicU64::new(0),
            candidates: weighted.iter().map(|&(i, _)| i).collect(),
        }
    }

    fn walk(&self, mut node: u32, mut k: u64) -> usize {
        loop {
            match self.nodes[node as usize] {
                Node::Leaf(i) => return i,
                Node::Split {
                    left_weight,
                    total,
                    left,
                    right,
                } => {
                    // a_k = ⌊(2kL + T) / 2T⌋ visits went left before visit k.
                    let num = 2 * k * left_weight + total;
                    let before = num / (2 * total);
                    let rem = num % (2 * total);
                    if rem + 2 * left_weight >= 2 * total {
                        node = left;
                        k = before;
                    } else {
                        node = right;
                        k -= before;
                    }
                }
            }
        }
    }
}

fn build(items: &[(usize, u64)], nodes: &mut Vec<Node>) -> Option<u32> {
    match items {
        [] => None,
        [(i, _)] => {
            nodes.push(Node::Leaf(*i));
            Some((nodes.len() - 1) as u32)
        }
        _ => {
            let mid = items.len() / 2;
            let left_weight = items[..mid].iter().map(|&(_, w)| w).sum();
            let total = items.iter().map(|&(_, w)| w).sum();
            let left = build(&items[..mid], nodes)?;
            let right = build(&items[mid..], nodes)?;
            nodes.push(Node::Split {
                left_weight,
                total,
                left,
                right,
            });
            Some((nodes.len() - 1) as u32)
        }
    }
}

impl Selector for SmoothWrr {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let root = self.root?;
        // A retry may land on tried servers; a few more tickets usually find another, then fall
        // back to a scan.
        for _ in 0..self.candidates.len().min(8) {
            let k = self.ticket.fetch_add(1, Ordering::Relaxed) % self.total;
            let i = self.walk(root, k);
            if ctx.allowed(i) {
                return Some(i);
            }
        }
        fallback(ctx, &self.candidates)
    }
}
