// YOLOX output decoding on the GPU, the arithmetic of mod.rs: one thread per
// anchor row of each image (blockIdx.y = image); every (row, class) whose
// objectness x class score exceeds the image's threshold becomes a
// candidate record (inference/candidates.cu, compiled in front of this).

extern "C" __global__ void yolox_decode(
    const float* output,   // [images, rows, 5 + classes]
    const float* anchors,  // [rows, 3]: grid x, grid y, stride
    int rows,
    int classes,
    CandidateTargets t
) {
    __shared__ unsigned int bins[CANDIDATE_BINS];
    candidates_begin(t, bins);
    const int image = blockIdx.y;
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    const float threshold = t.thresholds[image];
    const float* row = output + ((size_t)image * rows + r) * (5 + classes);
    // Class scores are at most 1, so a low objectness rules out the row.
    // No early return: every thread must reach candidates_end.
    const bool live = r < rows && row[4] > threshold;
    unsigned int found = 0;
    if (live) {
        const float objectness = row[4];
        for (int k = 0; k < classes; ++k) {
            if (objectness * row[5 + k] > threshold) {
                ++found;
            }
        }
    }
    if (found > 0) {
        unsigned int i = candidates_reserve(t, image, found);
        const float objectness = row[4];
        const float gx = anchors[3 * r];
        const float gy = anchors[3 * r + 1];
        const float stride = anchors[3 * r + 2];
        const float cx = (row[0] + gx) * stride;
        const float cy = (row[1] + gy) * stride;
        const float w = expf(row[2]) * stride;
        const float h = expf(row[3]) * stride;
        for (int k = 0; k < classes; ++k) {
            // The same expression as the count above, so the same result.
            const float confidence = objectness * row[5 + k];
            if (confidence > threshold) {
                candidates_write(t, bins, i, cx - w / 2.0f, cy - h / 2.0f, cx + w / 2.0f,
                                 cy + h / 2.0f, confidence, k, r, image);
                ++i;
            }
        }
    }
    candidates_end(t, bins, image);
}
