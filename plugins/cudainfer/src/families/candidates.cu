// Candidate records, shared by every model family's output decoding kernel:
// compiled in front of the family's source (families/gpu.rs). A family
// kernel runs one thread per output position (anchor) of each image, one
// image per block row (blockIdx.y = image), and turns every (position,
// class) above the image's threshold into a record
// [x1, y1, x2, y2, confidence, class, position, image] through the helpers
// below, which append it at one atomic counter for the whole batch (so
// only survivors are copied to the host, in one copy per batch) and, when
// asked, count it in the image's confidence histogram (bin b holds
// b / BINS <= confidence < (b + 1) / BINS; the last bin everything above),
// from which the host picks per-image thresholds that keep about
// max-detections candidates, and decodes again.

#define CANDIDATE_BINS 2048
#define CANDIDATE_RECORD 8

// Mirrors `CandidateTargets` in families/gpu.rs.
struct CandidateTargets {
    const float* thresholds;   // [images]
    float* records;            // [capacity, CANDIDATE_RECORD]
    unsigned int* counts;      // [1 + images]: all survivors, then each image's
    unsigned int* histograms;  // [images, CANDIDATE_BINS], or null for none
    unsigned int capacity;     // records that fit; more are counted, not written
};

// floor(confidence * BINS), clamped; exact, as BINS is a power of two.
__device__ __forceinline__ int confidence_bin(float confidence) {
    return (int)fminf(fmaxf(confidence * (float)CANDIDATE_BINS, 0.0f), (float)(CANDIDATE_BINS - 1));
}

// The block's histogram lives in shared memory (`bins`, CANDIDATE_BINS of
// them, declared by the kernel): a block covers one image only, so it costs
// one global add per non-empty bin. Every thread of the block must call
// candidates_begin and candidates_end (no early return in between).
__device__ __forceinline__ void candidates_begin(const CandidateTargets& t, unsigned int* bins) {
    if (t.histograms != nullptr) {  // the same for the whole block
        for (int b = threadIdx.x; b < CANDIDATE_BINS; b += blockDim.x) {
            bins[b] = 0;
        }
        __syncthreads();
    }
}

// Reserves `found` records of `image` and returns the first one's index. A
// thread counts its position's survivors first and reserves them with one
// atomic: at a threshold of 0 every (position, class) survives, and an
// atomic per record on one counter would serialise the whole batch.
__device__ __forceinline__ unsigned int candidates_reserve(
    const CandidateTargets& t, int image, unsigned int found) {
    atomicAdd(&t.counts[1 + image], found);
    return atomicAdd(&t.counts[0], found);
}

// Writes record `i` (when it fits) and counts it in the block's histogram.
__device__ __forceinline__ void candidates_write(
    const CandidateTargets& t, unsigned int* bins, unsigned int i,
    float x1, float y1, float x2, float y2, float confidence,
    int cls, int position, int image) {
    if (t.histograms != nullptr) {
        atomicAdd(&bins[confidence_bin(confidence)], 1u);
    }
    if (i < t.capacity) {
        float* c = t.records + (size_t)i * CANDIDATE_RECORD;
        c[0] = x1;
        c[1] = y1;
        c[2] = x2;
        c[3] = y2;
        c[4] = confidence;
        c[5] = (float)cls;
        c[6] = (float)position;
        c[7] = (float)image;
    }
}

// Adds the block's histogram to its image's.
__device__ __forceinline__ void candidates_end(
    const CandidateTargets& t, unsigned int* bins, int image) {
    if (t.histograms != nullptr) {
        __syncthreads();
        unsigned int* out = t.histograms + (size_t)image * CANDIDATE_BINS;
        for (int b = threadIdx.x; b < CANDIDATE_BINS; b += blockDim.x) {
            if (bins[b] != 0) {
                atomicAdd(&out[b], bins[b]);
            }
        }
    }
}
