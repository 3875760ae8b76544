//! Shared by the fuzz targets: a reader of their simple input format (so that
//! `make_seeds.py` can write seeds by hand), an allocator that makes an
//! unbounded allocation a crash, the checks every detector's decoding
//! must pass, and what cudainfer-run may show of a camera URI.

use std::alloc::{GlobalAlloc, Layout, System};

use gstcudainfer::families::{keep_most_confident, nms, Candidate};

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
    pub model_type: gstcudainfer::families::ModelType,
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
    use gstcudainfer::families::{self, ModelOutput, ModelShapes};
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
    let Ok(parser) = families::new_family(family.model_type, &shapes, &Default::default()) else {
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

/// A URI's text split where `CameraUri::parse` (and RFC 3986) splits it:
/// `head` up to and with the first `://`, the user information up to the
/// last '@' before the first '/', '?' or '#' (`None` without such an '@'),
/// and the `rest` after that '@' (host, port, path).
pub struct UriParts<'a> {
    pub head: &'a str,
    pub userinfo: Option<&'a str>,
    pub rest: &'a str,
}

impl<'a> UriParts<'a> {
    /// `None` where the text has no `://`.
    pub fn split(uri: &'a str) -> Option<Self> {
        let (head, after) = uri.split_at(uri.find("://")? + 3);
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        Some(match after[..end].rfind('@') {
            Some(at) => Self {
                head,
                userinfo: Some(&after[..at]),
                rest: &after[at + 1..],
            },
            None => Self {
                head,
                userinfo: None,
                rest: after,
            },
        })
    }

    /// The text without its user information: all a message may quote.
    pub fn without_userinfo(&self) -> String {
        format!("{}{}", self.head, self.rest)
    }

    /// The text with `stand_in` for its user information.
    pub fn with_userinfo(&self, stand_in: &str) -> String {
        format!("{}{stand_in}@{}", self.head, self.rest)
    }

    /// The user and the password as written (percent-encoded).
    pub fn credentials(&self) -> (Option<&'a str>, Option<&'a str>) {
        match self.userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(user), Some(password)),
                None => (Some(info), None),
            },
        }
    }
}

/// RFC 3986 percent-decoding, invalid UTF-8 replaced: a '%' not followed
/// by two hexadecimal digits stays as it is.
pub fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, after)) = rest.split_first() {
        match after {
            [h, l, tail @ ..] if b == b'%' && h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                let digit = |c: u8| (c as char).to_digit(16).unwrap() as u8;
                out.push(digit(*h) * 16 + digit(*l));
                rest = tail;
            }
            _ => {
                out.push(b);
                rest = after;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A stand-in for a user information, for checking that an outcome does
/// not depend on it: of the same length, as a limit on the URI's length
/// counts it.
fn stand_in(info: &str) -> String {
    "x".repeat(info.len())
}

/// The text `err`'s message quotes from the URI.
fn quoted(err: &cudainfer_run::camera_uri::UriError) -> Option<&str> {
    use cudainfer_run::camera_uri::UriError;
    match err {
        UriError::Scheme(q)
        | UriError::NoHost(q)
        | UriError::File(q, _)
        | UriError::NotAllowed(q)
        | UriError::NotRegular(q) => Some(q),
        _ => None,
    }
}

/// A refused camera URI: the error is the one the same URI gets with a
/// stand-in user information, and what its message quotes is text of the
/// URI without its user information (the scheme, or the URI rebuilt
/// without it). So no text of the user information is shown unless the
/// rest of the URI or the message's own words hold it too.
pub fn check_refused_uri(uri: &str, err: &cudainfer_run::camera_uri::UriError) {
    use cudainfer_run::camera_uri::CameraUri;
    assert!(!err.to_string().is_empty());
    let Some(parts) = UriParts::split(uri) else {
        assert!(quoted(err).is_none(), "{err:?} for {uri:?}");
        return;
    };
    let rest = parts.without_userinfo().to_lowercase();
    if let Some(q) = quoted(err) {
        assert!(
            rest.contains(&q.to_lowercase()),
            "the error for {uri:?} quotes {q:?}"
        );
    }
    let Some(info) = parts.userinfo else {
        return;
    };
    // A control character or space in the user information is refused as
    // such; the stand-in has none.
    if !info.chars().any(|c| c.is_control() || c == ' ') {
        let stand_in = CameraUri::parse(&parts.with_userinfo(&stand_in(info))).err();
        assert_eq!(
            Some(err),
            stand_in.as_ref(),
            "the error depends on the user information of {uri:?}"
        );
    }
}

/// A query's `&`-separated pairs, and the fragment after it.
fn query_pairs(query: &str) -> (Vec<&str>, Option<&str>) {
    match query.split_once('#') {
        Some((query, fragment)) => (query.split('&').collect(), Some(fragment)),
        None => (query.split('&').collect(), None),
    }
}

/// `shown` is `bare` with, at most, values of its query replaced by
/// `<redacted>`, each such value one of `secrets`.
fn check_masked_query(bare: &str, shown: &str, secrets: &[&str]) {
    let Some((path, query)) = bare.split_once('?') else {
        assert_eq!(shown, bare);
        return;
    };
    let shown_query = shown
        .strip_prefix(path)
        .and_then(|s| s.strip_prefix('?'))
        .unwrap_or_else(|| panic!("{shown:?} is not {bare:?}'s path"));
    let ((pairs, fragment), (shown_pairs, shown_fragment)) =
        (query_pairs(query), query_pairs(shown_query));
    assert_eq!(fragment, shown_fragment);
    assert_eq!(pairs.len(), shown_pairs.len(), "{shown:?} for {bare:?}");
    for (pair, shown_pair) in pairs.iter().zip(shown_pairs) {
        if *pair != shown_pair {
            let (key, value) = pair.split_once('=').expect("a value replaced");
            assert_eq!(shown_pair, format!("{key}=<redacted>"));
            assert!(secrets.contains(&value), "{value:?} hidden but no secret");
        }
    }
}

/// An accepted camera URI: its parts are the text's; the bare URI (what
/// GStreamer gets) is the text without user information and parses to a
/// URI without credentials; the redacted form and a debug print are the
/// bare URI with `<redacted>@` for credentials (and credential values of
/// the query hidden); `redact_text` removes every secret from the URI's own
/// text. The outcome does not depend on the user information.
pub fn check_accepted_uri(uri: &str, parsed: &cudainfer_run::camera_uri::CameraUri) {
    use cudainfer_run::camera_uri::{redact_text, CameraUri, SourceKind};
    let parts = UriParts::split(uri).expect("an accepted URI has ://");
    let bare = parsed.bare();
    assert_eq!(
        bare,
        format!("{}{}", parts.head.to_ascii_lowercase(), parts.rest)
    );
    let again = CameraUri::parse(bare).expect("the bare URI parses");
    assert_eq!(
        (again.bare(), again.kind(), again.user(), again.password()),
        (bare, parsed.kind(), None, None)
    );

    let (user, password) = parts.credentials();
    let decoded = |s: Option<&str>| s.map(percent_decode).filter(|s| !s.is_empty());
    assert_eq!(parsed.user(), decoded(user).as_deref());
    assert_eq!(parsed.password(), decoded(password).as_deref());
    let credentials: Vec<&str> = parsed.user().into_iter().chain(parsed.password()).collect();
    // The user and the password, then any the query holds.
    let secrets = parsed.secrets();
    assert!(secrets.starts_with(&credentials), "{secrets:?}");

    let redacted = parsed.redacted();
    if parsed.kind() == SourceKind::File {
        // Local files only: no credentials (a path may hold an '@').
        assert!(parts.userinfo.is_none());
    } else {
        assert!(!bare.contains('@'), "an '@' in {bare:?}");
        assert_eq!(
            redacted.matches('@').count(),
            usize::from(!credentials.is_empty()),
            "{redacted:?}"
        );
        // The port, if any, is a number from 1 to 65535.
        let host = &parts.rest[..parts.rest.find(['/', '?', '#']).unwrap_or(parts.rest.len())];
        assert!(!host.is_empty());
        let after_host = match host.strip_prefix('[') {
            Some(v6) => &v6[v6.find(']').expect("a closed IPv6 host") + 1..],
            None => host.find(':').map_or("", |i| &host[i..]),
        };
        if let Some(port) = after_host.strip_prefix(':') {
            assert!(
                port.is_empty()
                    || (port.bytes().all(|b| b.is_ascii_digit())
                        && port.parse::<u16>().is_ok_and(|p| p > 0)),
                "port {port:?} accepted"
            );
        } else {
            assert!(after_host.is_empty(), "{after_host:?} after the host");
        }
    }

    let bare_shown = again.redacted();
    check_masked_query(bare, &bare_shown, &again.secrets());
    if credentials.is_empty() {
        assert_eq!(redacted, bare_shown);
    } else {
        let (scheme, rest) = bare_shown.split_once("://").unwrap();
        assert_eq!(redacted, format!("{scheme}://<redacted>@{rest}"));
    }
    assert_eq!(format!("{parsed:?}"), format!("CameraUri({redacted})"));

    // Every secret is replaced wherever it is written. Left out: secrets
    // of one character (not replaced, by design) and those that
    // `<redacted>` itself can spell (holding '<' or '>', or within
    // "redacted").
    let shown = redact_text(uri, &secrets);
    for secret in &secrets {
        if secret.len() >= 2 && !secret.contains(['<', '>']) && !"redacted".contains(secret) {
            assert!(
                !shown.contains(secret),
                "redact_text({uri:?}) shows {secret:?}: {shown}"
            );
        }
    }

    // (An accepted URI has no control character or space.)
    if let Some(info) = parts.userinfo {
        let other = CameraUri::parse(&parts.with_userinfo(&stand_in(info)))
            .expect("accepted with a stand-in user information");
        assert_eq!((other.bare(), other.kind()), (bare, parsed.kind()));
    }
}
