//! The contract between the families and what runs them: what a family
//! makes of one image's output ([`FrameResult`]), within which limits, and
//! the model's shapes it is built from. `inference/` carries these values
//! without knowing which family made them.

/// One detection before NMS, in tensor pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class_id: u32,
    pub confidence: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

/// One class of a whole-frame classification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScore {
    pub class_id: u32,
    pub confidence: f32,
}

/// What a family makes of one image's output, so that `inference/` carries
/// either kind without knowing the family.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameResult {
    /// Detection candidates, in tensor pixels, before NMS.
    Candidates(Vec<Candidate>),
    /// Classes of the whole frame, most confident first.
    Classes(Vec<ClassScore>),
    /// The frame's part of each output, not decoded.
    Tensors(Vec<crate::meta::raw_outputs::RawTensor>),
}

/// What one frame keeps of its decoded output: candidates above `confidence`, at most the `max_detections` most confident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    pub confidence: f32,
    pub max_detections: usize,
}

/// The `max` most confident of `candidates` (ties go to the earlier one),
/// in their original order: the same result wherever decoding ran, as both
/// paths give candidates in (row, class) order.
pub fn keep_most_confident(candidates: Vec<Candidate>, max: usize) -> Vec<Candidate> {
    if candidates.len() <= max {
        return candidates;
    }
    // A total order (confidence descending, then position), so the
    // selection is deterministic; O(n) rather than a full sort, as a low
    // threshold leaves hundreds of thousands of candidates.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    let rank = |&a: &usize, &b: &usize| {
        candidates[b]
            .confidence
            .total_cmp(&candidates[a].confidence)
            .then(a.cmp(&b))
    };
    if max > 0 {
        order.select_nth_unstable_by(max - 1, rank);
    }
    order.truncate(max);
    order.sort_unstable();
    order.into_iter().map(|i| candidates[i]).collect()
}

/// Most values one frame's output may have (256 MB of float32), as
/// the bound on the input's values: a model claiming more is a
/// broken export, and its size must not overflow.
pub const MAX_OUTPUT_VALUES: u64 = 64 << 20;

/// Shapes of the model's input and outputs as ONNX Runtime reports them
/// (`-1` for a symbolic dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShapes {
    pub input: Vec<i64>,
    /// Every output, in the model's order.
    pub outputs: Vec<ModelOutput>,
}

/// One output of the model: its name and shape (empty for a value that is
/// not a tensor).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    pub name: String,
    pub shape: Vec<i64>,
}

impl ModelShapes {
    /// The shape of the first output (empty if there is none), the one
    /// output of the YOLO families.
    pub fn first_output(&self) -> &[i64] {
        self.outputs.first().map_or(&[], |o| &o.shape)
    }
}

/// A model output a family decodes: its index among the model's outputs
/// and the shape of one image's part of it (the batch dimension dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputUse {
    pub index: usize,
    pub dims: Vec<usize>,
}

impl OutputUse {
    /// f32 values one image has in this output.
    pub fn values(&self) -> usize {
        self.dims.iter().product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(class_id: u32, confidence: f32) -> Candidate {
        Candidate {
            class_id,
            confidence,
            x1: 0.0,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
        }
    }

    fn ids(candidates: &[Candidate]) -> Vec<u32> {
        candidates.iter().map(|c| c.class_id).collect()
    }

    #[test]
    fn keeps_the_most_confident_in_original_order() {
        let all: Vec<Candidate> = [0.2, 0.9, 0.5, 0.7, 0.1]
            .iter()
            .enumerate()
            .map(|(i, &c)| candidate(i as u32, c))
            .collect();
        assert_eq!(ids(&keep_most_confident(all.clone(), 3)), [1, 2, 3]);
        assert_eq!(ids(&keep_most_confident(all.clone(), 1)), [1]);
        assert!(keep_most_confident(all.clone(), 0).is_empty());
        assert_eq!(keep_most_confident(all.clone(), 5), all);
        assert_eq!(keep_most_confident(all.clone(), usize::MAX), all);
    }

    #[test]
    fn ties_go_to_the_earlier_candidate() {
        let all: Vec<Candidate> = [0.5, 0.8, 0.5, 0.5, 0.8]
            .iter()
            .enumerate()
            .map(|(i, &c)| candidate(i as u32, c))
            .collect();
        assert_eq!(ids(&keep_most_confident(all.clone(), 3)), [0, 1, 4]);
        assert_eq!(ids(&keep_most_confident(all.clone(), 4)), [0, 1, 2, 4]);
        assert_eq!(ids(&keep_most_confident(all, 2)), [1, 4]);
    }

    #[test]
    fn agrees_with_a_full_stable_sort() {
        // Few distinct confidences, so that ties are everywhere.
        let all: Vec<Candidate> = (0..500u32)
            .map(|i| candidate(i, ((i * 7919) % 13) as f32 / 13.0))
            .collect();
        for max in [0, 1, 7, 38, 39, 40, 250, 499, 500, 501] {
            let mut sorted = all.clone();
            sorted.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
            let mut expected: Vec<u32> = ids(&sorted[..max.min(all.len())]);
            expected.sort_unstable();
            assert_eq!(
                ids(&keep_most_confident(all.clone(), max)),
                expected,
                "max {max}"
            );
        }
    }
}
