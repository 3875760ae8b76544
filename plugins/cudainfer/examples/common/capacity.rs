//! `pipeline_bench --live --find-capacity`: the largest number of streams
//! that passes, by bisection between two bounds, each N its own run.
//!
//! Passing is taken to be monotone in N (more streams never pass where
//! fewer failed): each run then halves the candidates, so a search over
//! `LO..=HI` is exact after ceil(log2(HI - LO + 2)) runs (8 for 16..=192).
//! Live runs are long, so the number of runs is capped; a capped search
//! reports the bracket it got to (largest N that passed, smallest that
//! failed) instead of pretending to be exact.
//!
//! Included with `#[path = "common/capacity.rs"] mod capacity;`.

/// What a search tried and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// Each N run, in order, and whether it passed.
    pub tried: Vec<(usize, bool)>,
    /// The largest N that passed; `None`: none did (or none was run).
    pub capacity: Option<usize>,
    /// The smallest N that failed; `None`: none did.
    pub first_fail: Option<usize>,
    /// Every N between `capacity` and `first_fail` (or the bounds) was
    /// settled: the search was not cut short.
    pub exact: bool,
}

/// The largest N in `lo..=hi` for which `pass` holds, assuming it holds
/// for every N below one that passes, in at most `max_runs` calls. `pass`
/// answers `None` when it cannot run N (out of time): the search stops
/// there with what it has.
pub fn bisect(
    lo: usize,
    hi: usize,
    max_runs: usize,
    mut pass: impl FnMut(usize) -> Option<bool>,
) -> Search {
    let mut search = Search {
        tried: Vec::new(),
        capacity: None,
        first_fail: None,
        exact: false,
    };
    if lo > hi {
        return search;
    }
    loop {
        // Still open: the capacity is `capacity` (or none) or one of low..=high.
        let low = search.capacity.map_or(lo, |g| g + 1);
        let high = search.first_fail.map_or(hi, |b| b - 1);
        if low > high {
            search.exact = true;
            return search;
        }
        if search.tried.len() >= max_runs {
            return search;
        }
        // The upper middle splits the open outcomes (no capacity above
        // `capacity`, or low..=high) in two equal halves.
        let n = low + (high - low).div_ceil(2);
        let Some(passed) = pass(n) else {
            return search;
        };
        search.tried.push((n, passed));
        if passed {
            search.capacity = Some(n);
        } else {
            search.first_fail = Some(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A search where exactly the N up to `capacity` pass.
    fn up_to(capacity: usize, lo: usize, hi: usize, max_runs: usize) -> Search {
        bisect(lo, hi, max_runs, |n| Some(n <= capacity))
    }

    #[test]
    fn finds_a_monotone_capacity_exactly() {
        for capacity in [16, 17, 64, 100, 150, 191] {
            let s = up_to(capacity, 16, 192, 8);
            assert_eq!(s.capacity, Some(capacity), "{s:?}");
            assert_eq!(s.first_fail, Some(capacity + 1), "{s:?}");
            assert!(s.exact);
            assert!(s.tried.len() <= 8, "{s:?}");
            assert!(s
                .tried
                .iter()
                .all(|&(n, p)| (16..=192).contains(&n) && p == (n <= capacity)));
        }
    }

    #[test]
    fn the_bounds_themselves() {
        // Only LO passes: it is run, and so is LO + 1.
        let s = up_to(16, 16, 192, 8);
        assert!(s.tried.contains(&(16, true)) && s.tried.contains(&(17, false)));
        // HI passes: the capacity is HI, not above it.
        let s = up_to(1000, 16, 192, 8);
        assert_eq!(s.capacity, Some(192));
        assert_eq!(s.first_fail, None);
        assert!(s.exact);
        assert_eq!(s.tried.last(), Some(&(192, true)));
        // One candidate: one run.
        assert_eq!(up_to(5, 4, 4, 7).tried, vec![(4, true)]);
        assert_eq!(up_to(3, 4, 4, 7).tried, vec![(4, false)]);
        // Reversed bounds: nothing to run.
        assert_eq!(up_to(3, 5, 4, 7).tried, vec![]);
    }

    #[test]
    fn none_passes() {
        let s = bisect(16, 192, 8, |_| Some(false));
        assert_eq!(s.capacity, None);
        assert_eq!(s.first_fail, Some(16));
        assert!(s.exact);
        assert_eq!(s.tried.last(), Some(&(16, false)));
    }

    #[test]
    fn all_pass() {
        let s = bisect(1, 4, 7, |_| Some(true));
        assert_eq!(s.capacity, Some(4));
        assert!(s.exact);
        assert!(s.tried.len() <= 3, "{s:?}");
    }

    #[test]
    fn capped_runs_give_a_bracket() {
        let mut calls = 0;
        let s = bisect(16, 192, 5, |n| {
            calls += 1;
            Some(n <= 100)
        });
        assert_eq!(calls, 5);
        assert_eq!(s.tried.len(), 5);
        assert!(!s.exact);
        let (good, bad) = (s.capacity.unwrap(), s.first_fail.unwrap());
        assert!(
            good <= 100 && bad > 100 && bad - good <= 177 / 32 + 1,
            "{s:?}"
        );
    }

    #[test]
    fn stops_when_a_run_cannot_be_made() {
        let mut left = 2;
        let s = bisect(16, 192, 7, |n| {
            if left == 0 {
                return None;
            }
            left -= 1;
            Some(n <= 100)
        });
        assert_eq!(s.tried.len(), 2);
        assert!(!s.exact);
        // Nothing that was not run is claimed.
        assert_eq!(
            s.capacity,
            s.tried.iter().filter(|t| t.1).map(|t| t.0).max()
        );
    }
}
