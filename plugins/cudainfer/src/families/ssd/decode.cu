// SSD output decoding on the GPU, the arithmetic of mod.rs: one thread per
// prior of each image (blockIdx.y = image); every (prior, class >= 1)
// whose score exceeds the image's threshold becomes a candidate record
// (inference/candidates.cu, compiled in front of this), its box in tensor
// pixels. Class 0 is the background and never a candidate.

extern "C" __global__ void ssd_decode(
    const float* scores,  // [images, count, classes]
    const float* boxes,   // [images, count, 4]: x1, y1, x2, y2 in 0..1, or raw dcx, dcy, dw, dh
    const float* priors,  // [count, 4]: cx, cy, w, h in 0..1 for raw boxes; null: boxes are decoded
    int count,
    int classes,
    float center_variance,
    float size_variance,
    float width,          // the input's size, from 0..1 to tensor pixels
    float height,
    CandidateTargets t
) {
    __shared__ unsigned int bins[CANDIDATE_BINS];
    candidates_begin(t, bins);
    const int image = blockIdx.y;
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    const float threshold = t.thresholds[image];
    // No early return: every thread must reach candidates_end.
    unsigned int found = 0;
    if (p < count) {
        const float* row = scores + ((size_t)image * count + p) * classes;
        for (int k = 1; k < classes; ++k) {
            if (row[k] > threshold) {
                ++found;
            }
        }
    }
    if (found > 0) {
        unsigned int i = candidates_reserve(t, image, found);
        const float* row = scores + ((size_t)image * count + p) * classes;
        const float* b = boxes + ((size_t)image * count + p) * 4;
        float x1 = b[0];
        float y1 = b[1];
        float x2 = b[2];
        float y2 = b[3];
        if (priors != nullptr) {
            const float* q = priors + (size_t)p * 4;
            const float cx = b[0] * center_variance * q[2] + q[0];
            const float cy = b[1] * center_variance * q[3] + q[1];
            const float w = expf(b[2] * size_variance) * q[2];
            const float h = expf(b[3] * size_variance) * q[3];
            x1 = cx - w / 2.0f;
            y1 = cy - h / 2.0f;
            x2 = cx + w / 2.0f;
            y2 = cy + h / 2.0f;
        }
        for (int k = 1; k < classes; ++k) {
            const float score = row[k];
            if (score > threshold) {
                candidates_write(t, bins, i, x1 * width, y1 * height, x2 * width, y2 * height,
                                 score, k, p, image);
                ++i;
            }
        }
    }
    candidates_end(t, bins, image);
}
