// YOLOX output decoding and confidence filtering on the GPU, the same
// arithmetic as src/parsers/yolox.rs: one thread per anchor row of each
// image of a batch (blockIdx.y); every (row, class) whose objectness x class
// score exceeds the image's threshold becomes a candidate record
// [x1, y1, x2, y2, confidence, class, row, image] appended at one atomic
// counter for the whole batch, so only survivors are copied to the host, in
// one copy per batch.
//
// Optionally it also counts each image's survivors by confidence in
// YOLOX_BINS bins (bin b holds b / BINS <= confidence < (b + 1) / BINS; the
// last bin everything above), from which the host picks per-image
// thresholds that keep about max-detections candidates, and decodes again.

#define YOLOX_BINS 2048

// floor(confidence * BINS), clamped; exact, as BINS is a power of two.
__device__ __forceinline__ int confidence_bin(float confidence) {
    return (int)fminf(fmaxf(confidence * (float)YOLOX_BINS, 0.0f), (float)(YOLOX_BINS - 1));
}

extern "C" __global__ void yolox_decode(
    const float* output,      // [images, rows, 5 + classes]
    const float* anchors,     // [rows, 3]: grid x, grid y, stride
    int rows,
    int classes,
    const float* thresholds,  // [images]
    float* candidates,        // [capacity, 8]
    unsigned int* counts,     // [1 + images]: all survivors, then each image's
    unsigned int capacity,
    unsigned int* histograms  // [images, YOLOX_BINS], or null for none
) {
    // One block covers rows of one image only (grid y = image), so a block
    // histogram in shared memory needs one global add per non-empty bin.
    __shared__ unsigned int bins[YOLOX_BINS];
    const bool histogram = histograms != nullptr;  // the same for the block
    if (histogram) {
        for (int b = threadIdx.x; b < YOLOX_BINS; b += blockDim.x) {
            bins[b] = 0;
        }
        __syncthreads();
    }
    const int image = blockIdx.y;
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    const float threshold = thresholds[image];
    const float* row = output + ((size_t)image * rows + r) * (5 + classes);
    // Class scores are at most 1, so a low objectness rules out the row.
    // No early return: every thread must reach the __syncthreads below.
    const bool live = r < rows && row[4] > threshold;
    // Count first, then reserve all of the row's records with one atomic
    // each: at a threshold of 0 every (row, class) survives, and an atomic
    // per record on one counter would serialise the whole batch.
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
        atomicAdd(&counts[1 + image], found);
        unsigned int i = atomicAdd(&counts[0], found);
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
                if (histogram) {
                    atomicAdd(&bins[confidence_bin(confidence)], 1u);
                }
                if (i < capacity) {
                    float* c = candidates + (size_t)i * 8;
                    c[0] = cx - w / 2.0f;
                    c[1] = cy - h / 2.0f;
                    c[2] = cx + w / 2.0f;
                    c[3] = cy + h / 2.0f;
                    c[4] = confidence;
                    c[5] = (float)k;
                    c[6] = (float)r;
                    c[7] = (float)image;
                }
                ++i;
            }
        }
    }
    if (histogram) {
        __syncthreads();
        unsigned int* out = histograms + (size_t)image * YOLOX_BINS;
        for (int b = threadIdx.x; b < YOLOX_BINS; b += blockDim.x) {
            if (bins[b] != 0) {
                atomicAdd(&out[b], bins[b]);
            }
        }
    }
}
