// Paints a frame's overlay primitives (overlay/layout.rs) in place, in one
// launch: block i paints primitive i. A sample is written by the last
// primitive covering it, as on the CPU where later primitives paint over
// earlier ones: a block skips the samples that a later primitive overlapping
// it (its "occluders", listed by the host) also covers.

// Mirrors layout::Prim as Prim::words lays it out.
struct Prim {
    int kind, x0, y0, x1, y1;
    int colour, text_colour;  // component k in byte k
    int text_x, text_y, scale, glyph_at, glyph_count;
    int occluders_at, occluders_count;
};

// Mirrors OverlayParams in overlay/cuda.rs.
struct OverlayParams {
    unsigned long long component[3];  // first sample of each component
    int pitch[3];
    int step[3];
    int shift[3];
    unsigned long long prims;      // const Prim*
    unsigned long long occluders;  // const int*
    unsigned long long glyphs;     // const unsigned char*, 8 rows per glyph
    int n_prims;
};

#define KIND_RECT 0
#define GLYPH 8

// 0: not covered, 1: the colour, 2: the text colour. Prim::cover, line for line.
__device__ int cover(const Prim& p, const unsigned char* glyphs, int x, int y) {
    if (x < p.x0 || x >= p.x1 || y < p.y0 || y >= p.y1) return 0;
    if (p.kind == KIND_RECT) return 1;
    int cell = GLYPH * p.scale;
    int dx = x - p.text_x, dy = y - p.text_y;
    if (dx < 0 || dy < 0 || dy >= cell || dx / cell >= p.glyph_count) return 1;
    unsigned char row = glyphs[(p.glyph_at + dx / cell) * GLYPH + dy / p.scale];
    return ((row >> ((dx % cell) / p.scale)) & 1) ? 2 : 1;
}

extern "C" __global__ void overlay(OverlayParams params) {
    int i = blockIdx.x;
    if (i >= params.n_prims) return;
    const Prim* prims = (const Prim*)params.prims;
    const int* occluders = (const int*)params.occluders;
    const unsigned char* glyphs = (const unsigned char*)params.glyphs;
    const Prim p = prims[i];
    for (int k = 0; k < 3; k++) {
        int s = params.shift[k];
        int sx0 = p.x0 >> s, sy0 = p.y0 >> s;
        int cols = ((p.x1 - 1) >> s) + 1 - sx0;
        int rows = ((p.y1 - 1) >> s) + 1 - sy0;
        long long n = (long long)cols * rows;
        unsigned char colour = (unsigned char)((p.colour >> (8 * k)) & 255);
        unsigned char text = (unsigned char)((p.text_colour >> (8 * k)) & 255);
        for (long long idx = threadIdx.x; idx < n; idx += blockDim.x) {
            int sx = sx0 + (int)(idx % cols), sy = sy0 + (int)(idx / cols);
            int x = sx << s, y = sy << s;
            int c = cover(p, glyphs, x, y);
            if (c == 0) continue;
            bool hidden = false;
            for (int o = 0; o < p.occluders_count && !hidden; o++)
                hidden = cover(prims[occluders[p.occluders_at + o]], glyphs, x, y) != 0;
            if (hidden) continue;
            unsigned char* row = (unsigned char*)(params.component[k] + (unsigned long long)sy * params.pitch[k]);
            row[(long long)sx * params.step[k]] = c == 1 ? colour : text;
        }
    }
}
