//! Class-wise greedy non-maximum suppression.

use super::Candidate;

pub fn iou(a: &Candidate, b: &Candidate) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = iw * ih;
    let area = |c: &Candidate| (c.x2 - c.x1).max(0.0) * (c.y2 - c.y1).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Keeps, per class, the highest-confidence boxes that overlap no kept box of
/// their class by more than `iou_threshold`. Output is sorted by confidence,
/// highest first (ties keep input order).
pub fn class_wise_nms(mut candidates: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        let suppressed = kept
            .iter()
            .any(|k| k.class_id == c.class_id && iou(k, &c) > iou_threshold);
        if !suppressed {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class_id: u32, confidence: f32, x1: f32) -> Candidate {
        Candidate {
            class_id,
            confidence,
            x1,
            y1: 0.0,
            x2: x1 + 10.0,
            y2: 10.0,
        }
    }

    #[test]
    fn suppresses_overlaps_within_a_class_only() {
        let kept = class_wise_nms(
            vec![
                cand(0, 0.5, 1.0),
                cand(0, 0.9, 0.0),
                cand(1, 0.6, 0.0),
                cand(0, 0.4, 50.0),
            ],
            0.45,
        );
        let got: Vec<(u32, f32)> = kept.iter().map(|c| (c.class_id, c.confidence)).collect();
        assert_eq!(got, vec![(0, 0.9), (1, 0.6), (0, 0.4)]);
    }

    #[test]
    fn iou_of_half_overlap() {
        assert!((iou(&cand(0, 1.0, 0.0), &cand(0, 1.0, 5.0)) - 50.0 / 150.0).abs() < 1e-6);
    }
}
