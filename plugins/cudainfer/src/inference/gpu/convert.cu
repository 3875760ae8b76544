// fp16 model outputs to float32 on the GPU, before a family's decoding
// kernel: families decode float32 alone. PTX's cvt is what cuda_fp16.h's
// __half2float is, without needing that header under NVRTC.
extern "C" __global__ void half_to_float(unsigned long long in, unsigned long long out,
                                         unsigned long long n) {
    const unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const unsigned short h = ((const unsigned short*)in)[i];
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    ((float*)out)[i] = f;
}
