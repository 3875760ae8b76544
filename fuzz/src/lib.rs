//! Shared by the fuzz targets: a reader of their simple input format (so that
//! `make_seeds.py` can write seeds by hand), an allocator that makes an
//! unbounded allocation a crash, and the checks every detector's decoding
//! must pass.

use std::alloc::{GlobalAlloc, Layout, System};

use gstcudainfer::parsers::{keep_most_confident, nms, Candidate};

/// Largest single allocation a target may make: the parsers' biggest
/// legitimate one (YOLOX anchors at 8192x8192) is 16 MiB.
pub const MAX_ALLOCATION: usize = 256 << 20;

/// The system allocator, aborting on any allocation above
/// [`MAX_ALLOCATION`] (libFuzzer's `-malloc_limit_mb` needs a sanitizer;
/// the targets are built without one).
pub struct CappedAlloc;

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // No panic: formatting a message would allocate.
        const MSG: &[u8] = b"fuzz: allocation above MAX_ALLOCATION\n";
        unsafe { libc_write(MSG) };
        std::process::abort();
    }
}

unsafe fn libc_write(msg: &[u8]) {
    extern "C" {
        fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    }
    write(2, msg.as_ptr(), msg.len());
}

/// Reads a target's input front to back; past the end, every value is 0.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    pub fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }

    pub fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }

    /// A shape: a rank byte (0..=7), then that many little-endian i64.
    pub fn shape(&mut self) -> Vec<i64> {
        let rank = self.u8() % 8;
        (0..rank).map(|_| self.i64()).collect()
    }

    /// A string: a length byte, then that many bytes (lossy UTF-8).
    pub fn string(&mut self) -> String {
        let len = (self.u8() as usize).min(self.data.len());
        let (s, rest) = self.data.split_at(len);
        self.data = rest;
        String::from_utf8_lossy(s).into_owned()
    }

    /// What is left, as little-endian f32 (a partial last value is dropped).
    pub fn rest_f32(&mut self) -> Vec<f32> {
        let values = self
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        self.data = &[];
        values
    }
}

/// The values of a decoded output: `values` cycled to `len`, or `None`
/// where there are none or the output is too large to decode quickly
/// (decoding is linear: bigger outputs only slow the fuzzer down).
pub fn output_values(values: &[f32], len: usize) -> Option<Vec<f32>> {
    const MAX_DECODED_VALUES: usize = 1 << 19;
    if len > MAX_DECODED_VALUES || values.is_empty() {
        return None;
    }
    Some(values.iter().copied().cycle().take(len).collect())
}

/// Largest `max-detections` tried: NMS is quadratic in it by design.
const MAX_KEPT: usize = 1024;

fn same(a: &Candidate, b: &Candidate) -> bool {
    a.class_id == b.class_id
        && [a.confidence, a.x1, a.y1, a.x2, a.y2]
            .iter()
            .zip([b.confidence, b.x1, b.y1, b.x2, b.y2])
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// What every detector's decoding keeps, as trtinfer runs it on a frame:
/// `candidates` (decoded at `threshold` by a parser of `num_classes`)
/// are of a known class and above the threshold; the `max_detections` most
/// confident are kept in order; class-wise NMS at `nms_threshold` leaves
/// boxes sorted by confidence, no two of a class overlapping above it.
pub fn check_detections(
    candidates: &[Candidate],
    num_classes: usize,
    threshold: f32,
    max_detections: u16,
    nms_threshold: f32,
) {
    for c in candidates {
        assert!((c.class_id as usize) < num_classes);
        assert!(c.confidence > threshold);
    }

    let max = max_detections as usize % (MAX_KEPT + 1);
    let kept = keep_most_confident(candidates.to_vec(), max);
    assert_eq!(kept.len(), candidates.len().min(max));
    // The kept ones are a subsequence of the candidates (original order)...
    let mut rest = candidates.iter();
    for k in &kept {
        assert!(rest.any(|c| same(c, k)), "kept out of order or invented");
    }
    // ...and none dropped is more confident than one kept.
    if let Some(least) = kept.iter().map(|k| k.confidence).min_by(f32::total_cmp) {
        let better = |c: &&Candidate| c.confidence.total_cmp(&least).is_gt();
        assert_eq!(
            candidates.iter().filter(better).count(),
            kept.iter().filter(better).count(),
            "a dropped candidate is more confident than a kept one"
        );
    }

    let after = nms::class_wise_nms(kept.clone(), nms_threshold);
    assert!(after.len() <= kept.len());
    assert!(
        after
            .windows(2)
            .all(|w| w[0].confidence.total_cmp(&w[1].confidence).is_ge()),
        "NMS output is sorted by confidence"
    );
    if after.len() <= 512 {
        for (i, a) in after.iter().enumerate() {
            for b in &after[..i] {
                assert!(
                    a.class_id != b.class_id
                        || nms::iou(a, b).partial_cmp(&nms_threshold)
                            != Some(std::cmp::Ordering::Greater),
                    "two kept boxes of one class overlap by more than the threshold"
                );
            }
        }
    }
}

/// A grid-anchor detector family (YOLOX, Ultralytics): one output of rank 3
/// whose `anchor_axis` counts the anchors of the stride 8/16/32 grids and
/// whose other axis holds `box_channels` values then one per class.
pub struct GridFamily {
    pub model_type: gstcudainfer::parsers::ModelType,
    pub output_name: &'static str,
    pub anchor_axis: usize,
    pub box_channels: i64,
}

/// A grid family's fuzz input, in order (see `Reader`; `make_seeds.py`
/// writes it): flags (bit 0: set the output's anchor count to the input's,
/// as a real export has, so that decoding is reached for many sizes), the
/// input shape, the output shape, the confidence threshold, the NMS
/// threshold, max-detections (u16), then the output's values (f32, cycled).
struct GridInput {
    input: Vec<i64>,
    output: Vec<i64>,
    matching_anchors: bool,
    threshold: f32,
    nms_threshold: f32,
    max_detections: u16,
    values: Vec<f32>,
}

impl GridInput {
    fn read(data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        let flags = r.u8();
        Self {
            input: r.shape(),
            output: r.shape(),
            matching_anchors: flags & 1 != 0,
            threshold: r.f32(),
            nms_threshold: r.f32(),
            max_detections: r.u16(),
            values: r.rest_f32(),
        }
    }
}

/// Anchors of the stride 8/16/32 grids of an `h`x`w` input, where that is
/// small.
fn grid_anchors(h: i64, w: i64) -> Option<i64> {
    if !(1..=1 << 16).contains(&h) || !(1..=1 << 16).contains(&w) {
        return None;
    }
    Some([8, 16, 32].iter().map(|s| (h / s) * (w / s)).sum())
}

/// One fuzz case of `family`: the parser from arbitrary model shapes (odd,
/// negative, huge), then decoding an arbitrary output (NaN, inf) with an
/// arbitrary threshold, keeping the most confident, and class-wise NMS.
/// Nothing may panic or allocate without bound, and each step keeps its
/// invariants.
pub fn fuzz_grid_family(family: &GridFamily, data: &[u8]) {
    use gstcudainfer::parsers::{self, ModelOutput, ModelShapes};
    let data = GridInput::read(data);
    let mut output = data.output;
    if data.matching_anchors && data.input.len() == 4 && output.len() == 3 {
        if let Some(anchors) = grid_anchors(data.input[2], data.input[3]) {
            output[family.anchor_axis] = anchors;
        }
    }
    let shapes = ModelShapes {
        input: data.input,
        outputs: vec![ModelOutput {
            name: family.output_name.into(),
            shape: output.clone(),
        }],
    };
    let Ok(parser) = parsers::new_parser(family.model_type, &shapes, &Default::default()) else {
        return;
    };
    let spec = parser.input_spec();
    assert_eq!(
        [spec.height as i64, spec.width as i64],
        shapes.input[2..4],
        "the spec is the model's input size"
    );
    let anchors = output[family.anchor_axis];
    let channels = output[3 - family.anchor_axis];
    assert_eq!(parser.num_classes() as i64, channels - family.box_channels);
    let output_len = parser.outputs()[0].values();
    assert_eq!(output_len as i64, channels * anchors);

    let Some(output) = output_values(&data.values, output_len) else {
        return;
    };
    let candidates = parser.decode(&[&output], data.threshold);
    assert!(candidates.len() <= anchors as usize * parser.num_classes());
    check_detections(
        &candidates,
        parser.num_classes(),
        data.threshold,
        data.max_detections,
        data.nms_threshold,
    );
}
