// Ultralytics (YOLOv8, YOLO11, YOLOv12) output decoding on the GPU, the
// arithmetic of mod.rs: one thread per anchor of each image (blockIdx.y =
// image); every (anchor, class) whose score exceeds the image's threshold
// becomes a candidate record (inference/candidates.cu, compiled in front of
// this).

extern "C" __global__ void yolov8_decode(
    const float* output,  // [images, 4 + classes, anchors]: channel c of anchor a at c * anchors + a
    int anchors,
    int classes,
    CandidateTargets t
) {
    __shared__ unsigned int bins[CANDIDATE_BINS];
    candidates_begin(t, bins);
    const int image = blockIdx.y;
    const int a = blockIdx.x * blockDim.x + threadIdx.x;
    const float threshold = t.thresholds[image];
    // This anchor's channel 0; channel c is c * anchors further. Neighbouring
    // threads read neighbouring anchors, so every read is coalesced.
    const float* column = output + (size_t)image * (4 + classes) * anchors + a;
    // No early return: every thread must reach candidates_end.
    unsigned int found = 0;
    if (a < anchors) {
        for (int k = 0; k < classes; ++k) {
            if (column[(size_t)(4 + k) * anchors] > threshold) {
                ++found;
            }
        }
    }
    if (found > 0) {
        unsigned int i = candidates_reserve(t, image, found);
        const float cx = column[0];
        const float cy = column[(size_t)anchors];
        const float w = column[(size_t)2 * anchors];
        const float h = column[(size_t)3 * anchors];
        for (int k = 0; k < classes; ++k) {
            const float score = column[(size_t)(4 + k) * anchors];
            if (score > threshold) {
                candidates_write(t, bins, i, cx - w / 2.0f, cy - h / 2.0f, cx + w / 2.0f,
                                 cy + h / 2.0f, score, k, a, image);
                ++i;
            }
        }
    }
    candidates_end(t, bins, image);
}
