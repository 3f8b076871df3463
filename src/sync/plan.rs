//! Splitting ids into backfill ranges that hold about as many rows each.
//!
//! An even split of the id span puts most customers into one range when ids are spread
//! unevenly (a later block of ids after an import, a sequence moved on, test accounts with huge
//! ids), and that range then walks alone: concurrency 8 ran no faster than 1 in the remote
//! bench with a gap in the ids. So the span is cut into pieces, the API counts the rows of each
//! (`limit=1`, sorted by `-id`, which also names the piece's highest id), pieces that hold too
//! many rows are cut again, and consecutive pieces are grouped into ranges of about equal
//! counts. The counts only steer the split: any split covers every id exactly once, so a
//! count that is stale by the time the ranges are walked costs balance, never rows.
//!
//! [`RangePlanner`] holds no I/O: the backfill asks the API for the counts it wants (in
//! parallel), the benchmark answers from its own records.

use crate::warehouse::BackfillRange;

/// Pieces counted at first for each range wanted, and the pieces a range's share of rows is
/// cut into when a piece holds too many.
pub const PIECES_PER_RANGE: u64 = 2;
/// Count requests a plan may make: one per this many pages of the backfill (its cost stays a
/// small part of it) ...
pub const PAGES_PER_COUNT: u64 = 8;
/// ... but at least this many per range wanted (the first round and one more) ...
pub const MIN_COUNTS_PER_RANGE: u64 = 4;
/// ... and at most this many (and never more than the backfill's pages).
pub const MAX_COUNTS_PER_RANGE: u64 = 64;

/// Ids in `(lo, hi]`, and how many rows the API had there once counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    lo: i64,
    hi: i64,
    count: Option<u64>,
}

/// Plans the ranges of one backfill from the API's row counts. Drive it with
/// [`RangePlanner::wanted`], [`RangePlanner::counted`] and [`RangePlanner::refine`], then take
/// [`RangePlanner::ranges`].
#[derive(Debug, Clone)]
pub struct RangePlanner {
    ranges: u64,
    pieces: Vec<Piece>,
    /// Count requests still allowed.
    budget: u64,
    exhausted: bool,
}

impl RangePlanner {
    /// A plan of up to `ranges` ranges over the ids `min..=max` (the API's lowest and highest),
    /// for a backfill of about `pages` pages.
    pub fn new(min: i64, max: i64, ranges: u32, pages: u64) -> Self {
        let ranges = u64::from(ranges.max(1));
        // Never more counts than pages: balancing a handful of pages is not worth a request.
        let budget = (pages / PAGES_PER_COUNT)
            .max(ranges * MIN_COUNTS_PER_RANGE)
            .min(ranges * MAX_COUNTS_PER_RANGE)
            .min(pages.max(ranges));
        let first = (ranges * PIECES_PER_RANGE).min(budget);
        let pieces = split_span(min.saturating_sub(1), max.max(min), first)
            .into_iter()
            .map(|(lo, hi)| Piece {
                lo,
                hi,
                count: None,
            })
            .collect();
        RangePlanner {
            ranges,
            pieces,
            budget: budget.saturating_sub(first),
            exhausted: false,
        }
    }

    /// The pieces `(lo, hi]` whose rows the API should count next.
    pub fn wanted(&self) -> Vec<(i64, i64)> {
        self.pieces
            .iter()
            .filter(|p| p.count.is_none())
            .map(|p| (p.lo, p.hi))
            .collect()
    }

    /// The API counted `count` rows in `(lo, hi]`, the highest of them `highest` (none when
    /// it counted none). What lies above the highest id is a piece of its own with no rows.
    pub fn counted(&mut self, lo: i64, hi: i64, count: u64, highest: Option<i64>) {
        let Some(i) = self.pieces.iter().position(|p| p.lo == lo && p.hi == hi) else {
            return;
        };
        self.pieces[i].count = Some(count);
        if let Some(top) = highest
            && top > lo
            && top < hi
            && count > 0
        {
            self.pieces[i].hi = top;
            self.pieces.insert(
                i + 1,
                Piece {
                    lo: top,
                    hi,
                    count: Some(0),
                },
            );
        }
    }

    /// Cuts again every counted piece holding more than three quarters of a range's share of
    /// the rows, so that grouping can balance the ranges (the first round's pieces, half a
    /// share each when ids are even, stay). Returns whether there are new pieces to count.
    pub fn refine(&mut self) -> bool {
        let total = self.total();
        let share = total / self.ranges;
        let limit = (share.saturating_mul(3) / 4).max(1);
        let mut out = Vec::with_capacity(self.pieces.len());
        let mut added = false;
        for p in &self.pieces {
            let count = p.count.unwrap_or(0);
            let span = i128::from(p.hi) - i128::from(p.lo);
            if count <= limit || span < 2 {
                out.push(*p);
                continue;
            }
            // Pieces of about half a share each if the rows were even.
            let k = count
                .saturating_mul(PIECES_PER_RANGE)
                .div_ceil(share.max(1))
                .clamp(2, 2 * PIECES_PER_RANGE * self.ranges);
            let mut k = k.min(u64::try_from(span).unwrap_or(u64::MAX));
            if k > self.budget {
                // As many as are left: the next round may still cut where the rows are.
                self.exhausted = true;
                k = self.budget;
            }
            if k < 2 {
                out.push(*p);
                continue;
            }
            self.budget -= k;
            added = true;
            out.extend(split_span(p.lo, p.hi, k).into_iter().map(|(lo, hi)| Piece {
                lo,
                hi,
                count: None,
            }));
        }
        self.pieces = out;
        added
    }

    /// Runs the whole plan against ids held in memory (`sorted` ascending by `id`), counting
    /// each piece as the API would: the benchmark's stand-in for the backfill's requests.
    pub fn count_in<T>(mut self, sorted: &[T], id: impl Fn(&T) -> i64) -> Self {
        loop {
            for (lo, hi) in self.wanted() {
                let a = sorted.partition_point(|x| id(x) <= lo);
                let b = sorted.partition_point(|x| id(x) <= hi);
                let highest = (b > a).then(|| id(&sorted[b - 1]));
                self.counted(lo, hi, (b - a) as u64, highest);
            }
            if !self.refine() {
                return self;
            }
        }
    }

    /// The rows counted so far (saturating: the counts come from the network).
    fn total(&self) -> u64 {
        self.pieces
            .iter()
            .filter_map(|p| p.count)
            .fold(0, u64::saturating_add)
    }

    /// Whether the count budget ran out (a piece may have stayed too large).
    pub fn exhausted(&self) -> bool {
        self.exhausted
    }

    /// Consecutive pieces grouped into up to `ranges` ranges of about equal counts, covering
    /// all of i64: the first starts at `i64::MIN`, the last has no upper end.
    pub fn ranges(&self) -> Vec<BackfillRange> {
        let total = self.total();
        // Range k ends where the rows seen so far come closest to k shares: after the piece
        // that reaches k shares, or before it when that is nearer.
        let n = u128::from(self.ranges);
        let mut cuts: Vec<i64> = Vec::new();
        let mut seen = 0u64;
        let mut seen_at_cut = 0u64;
        for (i, p) in self.pieces.iter().enumerate() {
            let before = seen;
            seen = seen.saturating_add(p.count.unwrap_or(0));
            let next = cuts.len() as u128 + 1;
            let goal = next * u128::from(total);
            if next >= n || i + 1 == self.pieces.len() || u128::from(seen) * n < goal {
                continue;
            }
            // `before` may be past this share already (a piece reached two shares).
            let under = goal.saturating_sub(u128::from(before) * n);
            let over = u128::from(seen) * n - goal;
            if i > 0 && under < over && before > seen_at_cut {
                cuts.push(self.pieces[i - 1].hi);
                seen_at_cut = before;
                // This piece may reach the next share too.
                if next + 1 < n && u128::from(seen) * n >= (next + 1) * u128::from(total) {
                    cuts.push(p.hi);
                    seen_at_cut = seen;
                }
            } else if seen > seen_at_cut {
                cuts.push(p.hi);
                seen_at_cut = seen;
            }
        }
        let mut ranges = Vec::with_capacity(cuts.len() + 1);
        let mut lo = i64::MIN;
        for (k, hi) in cuts
            .iter()
            .map(|&c| Some(c))
            .chain(std::iter::once(None))
            .enumerate()
        {
            ranges.push(BackfillRange {
                range_no: k as i64,
                lo,
                hi,
                cursor: lo,
                done: false,
            });
            if let Some(h) = hi {
                lo = h;
            }
        }
        ranges
    }
}

/// `(lo, hi]` cut into up to `k` pieces of about equal span, in order, covering it exactly.
fn split_span(lo: i64, hi: i64, k: u64) -> Vec<(i64, i64)> {
    let span = i128::from(hi) - i128::from(lo);
    if span <= 0 {
        return vec![(lo, hi)];
    }
    let k = i128::from(k.max(1)).min(span);
    let mut out = Vec::new();
    let mut from = lo;
    for j in 1..=k {
        let to = if j == k {
            hi
        } else {
            // Within (lo, hi], so it fits in i64.
            i64::try_from(i128::from(lo) + span * j / k).unwrap_or(hi)
        };
        if to > from {
            out.push((from, to));
            from = to;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plan for sorted `ids`, counted as the API would.
    fn plan(ids: &[i64], ranges: u32, pages: u64) -> RangePlanner {
        RangePlanner::new(ids[0], ids[ids.len() - 1], ranges, pages).count_in(ids, |&x| x)
    }

    fn counts(ids: &[i64], ranges: &[BackfillRange]) -> Vec<usize> {
        ranges
            .iter()
            .map(|r| {
                ids.iter()
                    .filter(|&&x| x > r.lo && r.hi.is_none_or(|h| x <= h))
                    .count()
            })
            .collect()
    }

    fn assert_covers(ranges: &[BackfillRange]) {
        assert_eq!(ranges[0].lo, i64::MIN);
        assert_eq!(ranges[ranges.len() - 1].hi, None);
        for w in ranges.windows(2) {
            assert_eq!(w[0].hi, Some(w[1].lo));
            assert!(w[1].lo > w[0].lo);
        }
        for (k, r) in ranges.iter().enumerate() {
            assert_eq!(r.range_no, k as i64);
            assert_eq!(r.cursor, r.lo);
        }
    }

    /// 99% of the ids dense, the newest 1% a billion higher: an even split of the span would
    /// put 99% in the first range; the plan gives each of 8 ranges about an eighth.
    #[test]
    fn a_gap_in_the_ids_still_gives_even_ranges() {
        let mut ids: Vec<i64> = (1..=198_000).collect();
        ids.extend((198_001..=200_000).map(|i| i + 1_000_000_000));
        let p = plan(&ids, 8, 2_000);
        assert!(!p.exhausted());
        let ranges = p.ranges();
        assert_covers(&ranges);
        assert_eq!(ranges.len(), 8);
        let c = counts(&ids, &ranges);
        assert_eq!(c.iter().sum::<usize>(), ids.len());
        assert!(
            c.iter().all(|&n| n <= 200_000 / 8 * 3 / 2),
            "uneven ranges: {c:?}"
        );
    }

    /// Even ids need no more than the first pieces: 2 count requests per range.
    #[test]
    fn even_ids_are_counted_once() {
        let ids: Vec<i64> = (1..=100_000).map(|i| i * 3).collect();
        let mut p = RangePlanner::new(ids[0], ids[ids.len() - 1], 8, 1_000);
        assert_eq!(p.wanted().len(), 16);
        for (lo, hi) in p.wanted() {
            let a = ids.partition_point(|&x| x <= lo);
            let b = ids.partition_point(|&x| x <= hi);
            p.counted(lo, hi, (b - a) as u64, (b > a).then(|| ids[b - 1]));
        }
        assert!(!p.refine(), "nothing to cut again");
        let c = counts(&ids, &p.ranges());
        assert_eq!(c.len(), 8);
        assert!(c.iter().all(|&n| n.abs_diff(12_500) <= 100), "{c:?}");
    }

    /// Count requests: one per 8 pages, at least 4 and at most 64 per range, never more than
    /// the pages; the first round asks 2 per range.
    #[test]
    fn the_count_budget_follows_the_backfill() {
        let p = RangePlanner::new(1, 2_000, 8, 20);
        assert_eq!((p.wanted().len(), p.budget), (16, 4));
        let p = RangePlanner::new(1, 2_000, 2, 2);
        assert_eq!((p.wanted().len(), p.budget), (2, 0));
        let p = RangePlanner::new(1, 2_000, 8, 120);
        assert_eq!((p.wanted().len(), p.budget), (16, 16));
        let p = RangePlanner::new(1, 2_000_000, 8, 2_000);
        assert_eq!((p.wanted().len(), p.budget), (16, 234));
        let p = RangePlanner::new(1, 2_000_000, 8, 100_000);
        assert_eq!((p.wanted().len(), p.budget), (16, 496));
    }

    /// A small backfill with a gap in its ids: the budget runs out, yet the ranges it could
    /// count are balanced better than an even split of the span.
    #[test]
    fn a_small_budget_still_cuts_where_the_rows_are() {
        let mut ids: Vec<i64> = (1..=4_950).collect();
        ids.extend((1..=50).map(|i| 1_000_000_000 + i));
        let p = plan(&ids, 2, 50);
        let c = counts(&ids, &p.ranges());
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|&n| n.abs_diff(2_500) <= 700), "{c:?}");
    }

    /// Counts no server could have (a broken or hostile one) plan without a panic, and the
    /// ranges still cover every id once.
    #[test]
    fn absurd_counts_still_give_a_cover() {
        let mut p = RangePlanner::new(1, 1_000_000, 8, 10_000);
        for round in 0..4 {
            for (lo, hi) in p.wanted() {
                p.counted(lo, hi, u64::MAX - round, Some(hi));
            }
            if !p.refine() {
                break;
            }
        }
        let ranges = p.ranges();
        assert_covers(&ranges);
        assert!(ranges.len() <= 8);
    }

    fn id_sets() -> impl Strategy<Value = Vec<i64>> {
        // Clusters of ids at random places in a wide span, as imports and sequence jumps
        // leave them.
        prop::collection::vec((0i64..1_000_000_000_000, 1usize..400, 1i64..50), 1..6).prop_map(
            |clusters| {
                let mut ids: Vec<i64> = clusters
                    .into_iter()
                    .flat_map(|(start, n, step)| (0..n as i64).map(move |i| start + i * step))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the ids: the ranges cover every id once, and unless the count budget ran
        /// out no range holds more than a share and three quarters (plus one): pieces hold at
        /// most three quarters of a share, and each cut is within half a piece of its share.
        #[test]
        fn ranges_cover_all_ids_and_are_balanced(ids in id_sets(), n in 1u32..17) {
            let p = plan(&ids, n, 1_000);
            let ranges = p.ranges();
            assert_covers(&ranges);
            let c = counts(&ids, &ranges);
            prop_assert_eq!(c.iter().sum::<usize>(), ids.len());
            prop_assert!(ranges.len() <= n as usize);
            if !p.exhausted() {
                let bound = (7 * ids.len()).div_ceil(4 * n as usize) + 1;
                prop_assert!(c.iter().all(|&k| k <= bound), "{:?} over {}", c, bound);
            }
        }
    }
}
