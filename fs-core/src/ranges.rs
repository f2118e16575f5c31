//! [`Ranges`]: which bytes of a file being downloaded have arrived.

/// A set of byte offsets, as sorted, disjoint, non-adjacent half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    ranges: Vec<(u64, u64)>,
}

impl Ranges {
    /// Adds `[start, end)`.
    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let first = self.ranges.partition_point(|&(_, re)| re < s);
        let mut last = first;
        while let Some(&(rs, re)) = self.ranges.get(last) {
            if rs > e {
                break;
            }
            s = s.min(rs);
            e = e.max(re);
            last += 1;
        }
        self.ranges.splice(first..last, [(s, e)]);
    }

    /// Removes `[start, end)`.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let first = self.ranges.partition_point(|&(_, re)| re <= start);
        let mut last = first;
        let mut kept = Vec::with_capacity(2);
        while let Some(&(rs, re)) = self.ranges.get(last) {
            if rs >= end {
                break;
            }
            if rs < start {
                kept.push((rs, start));
            }
            if re > end {
                kept.push((end, re));
            }
            last += 1;
        }
        self.ranges.splice(first..last, kept);
    }

    /// Every byte in this set or in `other`.
    pub fn union(&self, other: &Ranges) -> Ranges {
        let mut r = self.clone();
        for &(s, e) in &other.ranges {
            r.add(s, e);
        }
        r
    }

    /// Whether every byte of `[start, end)` is in the set (an empty range always is).
    pub fn covers(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let i = self.ranges.partition_point(|&(_, re)| re <= start);
        self.ranges
            .get(i)
            .is_some_and(|&(rs, re)| rs <= start && end <= re)
    }

    /// Whether `offset` is in the set.
    pub fn contains(&self, offset: u64) -> bool {
        self.covers(offset, offset + 1)
    }

    /// The first missing range of `[0, len)` that ends after `from`, clipped to start at
    /// `from` or later: where a download resuming at `from` should go next.
    pub fn gap_from(&self, from: u64, len: u64) -> Option<(u64, u64)> {
        let mut start = from.min(len);
        for &(rs, re) in &self.ranges {
            if re <= start {
                continue;
            }
            if rs > start {
                return Some((start, rs.min(len)));
            }
            start = re;
        }
        (start < len).then_some((start, len))
    }

    /// The first part of `[start, end)` that is in the set.
    pub fn overlap(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        let i = self.ranges.partition_point(|&(_, re)| re <= start);
        let &(rs, re) = self.ranges.get(i)?;
        let (s, e) = (rs.max(start), re.min(end));
        (s < e).then_some((s, e))
    }

    /// The ranges, in order.
    pub fn list(&self) -> Vec<(u64, u64)> {
        self.ranges.clone()
    }

    /// Bytes in the set.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|&(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::Ranges;

    #[test]
    fn adds_merge_and_gaps_follow() {
        let mut r = Ranges::default();
        assert_eq!(r.gap_from(0, 100), Some((0, 100)));
        r.add(10, 20);
        r.add(30, 40);
        assert!(r.covers(10, 20) && r.covers(12, 18) && !r.covers(15, 25));
        assert!(r.covers(5, 5));
        assert!(!r.contains(20) && r.contains(19));
        assert_eq!(r.gap_from(0, 100), Some((0, 10)));
        assert_eq!(r.gap_from(12, 100), Some((20, 30)));
        assert_eq!(r.gap_from(35, 100), Some((40, 100)));
        r.add(20, 30);
        assert!(r.covers(10, 40));
        assert_eq!(r.total(), 30);
        r.add(0, 10);
        r.add(40, 100);
        assert_eq!(r.gap_from(0, 100), None);
        assert_eq!(r.gap_from(50, 100), None);
        assert_eq!(r.total(), 100);
    }

    #[test]
    fn overlap_finds_the_first_common_part() {
        let mut r = Ranges::default();
        r.add(10, 20);
        r.add(30, 40);
        assert_eq!(r.overlap(0, 10), None);
        assert_eq!(r.overlap(0, 15), Some((10, 15)));
        assert_eq!(r.overlap(15, 35), Some((15, 20)));
        assert_eq!(r.overlap(20, 35), Some((30, 35)));
        assert_eq!(r.overlap(40, 50), None);
    }

    #[test]
    fn removes_cut_and_split() {
        let mut r = Ranges::default();
        r.add(10, 20);
        r.add(30, 40);
        r.remove(0, 5);
        r.remove(20, 30);
        assert_eq!(r.list(), vec![(10, 20), (30, 40)]);
        r.remove(15, 35);
        assert_eq!(r.list(), vec![(10, 15), (35, 40)]);
        r.remove(36, 38);
        assert_eq!(r.list(), vec![(10, 15), (35, 36), (38, 40)]);
        r.remove(0, 100);
        assert_eq!(r.total(), 0);
        let mut a = Ranges::default();
        a.add(0, 10);
        let mut b = Ranges::default();
        b.add(10, 20);
        b.add(30, 40);
        assert_eq!(a.union(&b).list(), vec![(0, 20), (30, 40)]);
    }

    #[test]
    fn overlapping_adds_count_once() {
        let mut r = Ranges::default();
        r.add(0, 50);
        r.add(25, 75);
        r.add(60, 70);
        r.add(80, 90);
        r.add(75, 80);
        assert_eq!(r.total(), 90);
        assert!(r.covers(0, 90));
        assert_eq!(r.gap_from(0, 100), Some((90, 100)));
    }
}
