//! Optimal one-to-one assignment of tracks to detections by IoU.
//!
//! Pairs below the IoU gate (or of different classes, when matching is
//! class-aware) are not allowed; among the allowed pairs the assignment
//! maximises the summed IoU (Hungarian method, `pathfinding`'s
//! Kuhn–Munkres). A forbidden pair weighs 0, the same as leaving both
//! unmatched, so a maximum-weight complete assignment that drops its
//! zero-weight pairs is an optimal partial one.

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;

/// IoU is turned into integers for the solver (it needs a total order):
/// a resolution of 1e-6, far finer than any box difference that matters.
const SCALE: f64 = 1_000_000.0;

/// Intersection over union of two boxes (x1, y1, x2, y2); 0 for empty
/// boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The optimal matching of `rows` × `cols` given the IoU (or any 0..1
/// affinity) of each pair by `affinity(row, col)`, `None` for a forbidden
/// pair. Pairs whose affinity is below `gate` are forbidden too. Returns
/// (row, col) pairs, by row.
pub fn assign(
    rows: usize,
    cols: usize,
    gate: f32,
    mut affinity: impl FnMut(usize, usize) -> Option<f32>,
) -> Vec<(usize, usize)> {
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let weights = Matrix::from_fn(rows, cols, |(r, c)| match affinity(r, c) {
        // The gate is inclusive and every allowed pair weighs at least 1,
        // so an allowed pair of affinity 0 (gate 0) is still taken.
        Some(a) if a.is_finite() && a >= gate => 1 + (f64::from(a) * SCALE).round() as i64,
        _ => 0,
    });
    // The solver assigns every row and wants no more rows than columns.
    let transposed = rows > cols;
    let weights = if transposed {
        weights.transposed()
    } else {
        weights
    };
    let (_, assignment) = kuhn_munkres(&weights);
    let mut pairs: Vec<(usize, usize)> = assignment
        .into_iter()
        .enumerate()
        .filter(|&(r, c)| weights[(r, c)] > 0)
        .map(|(r, c)| if transposed { (c, r) } else { (r, c) })
        .collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table<'a>(m: &'a [&'a [f32]]) -> impl FnMut(usize, usize) -> Option<f32> + 'a {
        |r, c| Some(m[r][c])
    }

    #[test]
    fn iou_by_hand() {
        // 10x10 boxes overlapping in a 5x10 strip: 50 / (100 + 100 - 50).
        assert!((iou([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou([0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]), 0.0);
        assert_eq!(iou([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn optimal_beats_greedy() {
        // Greedy takes (0,0) at 0.9 and is left with (1,1) at 0.1: 1.0.
        // The optimum is (0,1) + (1,0) = 0.8 + 0.7 = 1.5.
        let m: &[&[f32]] = &[&[0.9, 0.8], &[0.7, 0.1]];
        assert_eq!(assign(2, 2, 0.0, table(m)), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn gate_leaves_pairs_unmatched() {
        // Row 1's only overlap (0.2) is under the 0.3 gate: unmatched,
        // although the complete assignment would have to give it column 1.
        let m: &[&[f32]] = &[&[0.9, 0.0], &[0.0, 0.2]];
        assert_eq!(assign(2, 2, 0.3, table(m)), vec![(0, 0)]);
    }

    #[test]
    fn forbidden_pairs_are_never_matched() {
        // (0,0) has the best IoU but is forbidden (another class).
        let m = [[0.9f32, 0.5], [0.4, 0.0]];
        let pairs = assign(2, 2, 0.3, |r, c| (r, c).ne(&(0, 0)).then_some(m[r][c]));
        assert_eq!(pairs, vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn more_rows_than_columns() {
        // Three tracks, two detections: rows 0 and 2 take them, row 1 is
        // left (0.6 + 0.7 = 1.3 beats 0.5 + 0.7 and 0.6 + 0.4).
        let m: &[&[f32]] = &[&[0.6, 0.0], &[0.5, 0.4], &[0.0, 0.7]];
        assert_eq!(assign(3, 2, 0.3, table(m)), vec![(0, 0), (2, 1)]);
        assert!(assign(0, 2, 0.3, table(m)).is_empty());
    }
}
