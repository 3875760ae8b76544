// Frame to model tensor, the GPU implementation of src/preprocess/mod.rs:
// per-component triangle-filter resampling with the filter tables the host
// computed (the same ones the CPU path uses), YUV to RGB, letterbox padding,
// channel order and normalisation, written as NCHW float32 (`preprocess`) or
// float16 (`preprocess_f16`, for fp16 models): one body, two stores.
// One thread per tensor pixel. Mirrors `PreprocessParams` in preprocess/cuda.rs.

struct AxisTable {
    int first_at;   // ints[first_at + o]: first source sample of output o
    int count_at;   // ints[count_at + o]: number of taps of output o
    int weight_at;  // floats[weight_at + o * max_taps + k]: weight of tap k
    int max_taps;
};

struct Component {
    unsigned long long data;  // first sample of row 0 (plane start + byte offset)
    int pitch;                // bytes between rows
    int step;                 // bytes between samples of a row
    AxisTable x;
    AxisTable y;
};

struct PreprocessParams {
    Component comp[3];
    unsigned long long ints;
    unsigned long long floats;
    unsigned long long out;
    int content_w, content_h, tensor_w, tensor_h;
    int content_x, content_y;  // the content's top-left pixel in the tensor
    int is_yuv;
    float y_offset, y_gain, uv_gain, r_v, g_u, g_v, b_u;
    int source_channel[3];
    float gain[3], bias[3], pad[3];
};

__device__ float resample(const Component& c, const int* ints, const float* floats, int ox, int oy) {
    const int fy = ints[c.y.first_at + oy];
    const int ny = ints[c.y.count_at + oy];
    const float* wy = floats + c.y.weight_at + oy * c.y.max_taps;
    const int fx = ints[c.x.first_at + ox];
    const int nx = ints[c.x.count_at + ox];
    const float* wx = floats + c.x.weight_at + ox * c.x.max_taps;
    const unsigned char* base = (const unsigned char*)c.data;
    float acc = 0.0f;
    for (int i = 0; i < ny; ++i) {
        const unsigned char* row = base + (size_t)(fy + i) * c.pitch + (size_t)fx * c.step;
        float r = 0.0f;
        for (int j = 0; j < nx; ++j) {
            r += (float)row[j * c.step] * wx[j];
        }
        acc += r * wy[i];
    }
    return acc;
}

// One tensor value: float32 as is, float16 rounded to nearest (PTX's cvt,
// which cuda_fp16.h's __float2half_rn is, without needing that header).
__device__ __forceinline__ void store(float* out, size_t i, float v) { out[i] = v; }
__device__ __forceinline__ void store(unsigned short* out, size_t i, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    out[i] = h;
}

template <typename Out>
__device__ void preprocess_to(const PreprocessParams& p, Out* out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= p.tensor_w || y >= p.tensor_h) {
        return;
    }
    const size_t area = (size_t)p.tensor_w * p.tensor_h;
    const size_t at = (size_t)y * p.tensor_w + x;
    // Content pixel (cx, cy); the filter tables are indexed by it.
    const int cx = x - p.content_x;
    const int cy = y - p.content_y;
    if (cx < 0 || cy < 0 || cx >= p.content_w || cy >= p.content_h) {
        for (int c = 0; c < 3; ++c) {
            store(out, c * area + at, p.pad[c]);
        }
        return;
    }
    const int* ints = (const int*)p.ints;
    const float* floats = (const float*)p.floats;
    const float a = resample(p.comp[0], ints, floats, cx, cy);
    const float b = resample(p.comp[1], ints, floats, cx, cy);
    const float c = resample(p.comp[2], ints, floats, cx, cy);
    float rgb[3];
    if (p.is_yuv) {
        const float yy = (a - p.y_offset) * p.y_gain;
        const float u = (b - 128.0f) * p.uv_gain;
        const float v = (c - 128.0f) * p.uv_gain;
        rgb[0] = fminf(fmaxf(yy + p.r_v * v, 0.0f), 255.0f);
        rgb[1] = fminf(fmaxf(yy + p.g_u * u + p.g_v * v, 0.0f), 255.0f);
        rgb[2] = fminf(fmaxf(yy + p.b_u * u, 0.0f), 255.0f);
    } else {
        rgb[0] = a;
        rgb[1] = b;
        rgb[2] = c;
    }
    for (int ch = 0; ch < 3; ++ch) {
        store(out, ch * area + at, rgb[p.source_channel[ch]] * p.gain[ch] + p.bias[ch]);
    }
}

extern "C" __global__ void preprocess(PreprocessParams p) { preprocess_to(p, (float*)p.out); }
extern "C" __global__ void preprocess_f16(PreprocessParams p) {
    preprocess_to(p, (unsigned short*)p.out);
}
