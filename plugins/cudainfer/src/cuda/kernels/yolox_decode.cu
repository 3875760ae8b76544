// YOLOX output decoding and confidence filtering on the GPU, the same
// arithmetic as src/parsers/yolox.rs: one thread per anchor row of each
// image of a batch (blockIdx.y); every (row, class) whose objectness x class
// score exceeds the threshold becomes a candidate record
// [x1, y1, x2, y2, confidence, class, row, image] appended at one atomic
// counter for the whole batch, so only survivors are copied to the host, in
// one copy per batch.

extern "C" __global__ void yolox_decode(
    const float* output,     // [images, rows, 5 + classes]
    const float* anchors,    // [rows, 3]: grid x, grid y, stride
    int rows,
    int classes,
    float threshold,
    float* candidates,       // [capacity, 8]
    unsigned int* count,
    unsigned int capacity) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) {
        return;
    }
    const int image = blockIdx.y;
    const float* row = output + ((size_t)image * rows + r) * (5 + classes);
    const float objectness = row[4];
    // Class scores are at most 1, so a low objectness rules out the row.
    if (objectness <= threshold) {
        return;
    }
    const float gx = anchors[3 * r];
    const float gy = anchors[3 * r + 1];
    const float stride = anchors[3 * r + 2];
    const float cx = (row[0] + gx) * stride;
    const float cy = (row[1] + gy) * stride;
    const float w = expf(row[2]) * stride;
    const float h = expf(row[3]) * stride;
    for (int k = 0; k < classes; ++k) {
        const float confidence = objectness * row[5 + k];
        if (confidence > threshold) {
            const unsigned int i = atomicAdd(count, 1u);
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
        }
    }
}
