// edgevision GPU preprocessing: letterbox resize + pad + BGR->RGB + (x * scale - mean) / std +
// HWC uint8 -> CHW, for one frame, in a single pass (one thread per output pixel, all 3 channels).
//
// Host side: edgevision/runtime/preprocess_gpu.py (plan_letterbox computes every argument; pycuda's
// SourceModule compiles this file with no_extern_c=True; tests also compile it with CuPy/NVRTC).
// No headers are included, so NVRTC and nvcc both take it as is.
//
// The resize reproduces OpenCV's cv::resize(INTER_LINEAR) for 8-bit images bit for bit: half-pixel
// centres, 11-bit fixed-point weights, columns clamped at the border, rows interpolated then shifted
// exactly as OpenCV's VResizeLinear<uchar, int, short> does. The per-column/row source indices and
// weights are computed on the host (resize_tables) in the same float/double arithmetic as OpenCV and
// passed as two small int4 tables:
//   xtab[dx] = (x0, x1, a0, a1)  source columns and weights for resized column dx
//   ytab[dy] = (y0, y1, b0, b1)  source rows and weights for resized row dy
// Normalisation: out[c] = v[c'] * k[c] + b[c] with k = scale / std, b = -mean / std per output channel
// (c' = source channel: swapped when swap_rb != 0, the source being BGR).

__device__ __forceinline__ int lerp_u8(const unsigned char* __restrict__ src, int pitch, int4 xt, int4 yt, int c)
{
    const unsigned char* r0 = src + (long long)yt.x * pitch;
    const unsigned char* r1 = src + (long long)yt.y * pitch;
    const int h0 = r0[xt.x * 3 + c] * xt.z + r0[xt.y * 3 + c] * xt.w;
    const int h1 = r1[xt.x * 3 + c] * xt.z + r1[xt.y * 3 + c] * xt.w;
    const int v = (((yt.z * (h0 >> 4)) >> 16) + ((yt.w * (h1 >> 4)) >> 16) + 2) >> 2;
    return min(max(v, 0), 255);
}

__device__ __forceinline__ void put(float* dst, long long i, int v, float k, float b) { dst[i] = v * k + b; }

__device__ __forceinline__ void put(unsigned short* dst, long long i, int v, float k, float b)
{
    // float -> IEEE half, round to nearest even (what cuda_fp16.h's __float2half_rn emits)
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v * k + b));
    dst[i] = h;
}

__device__ __forceinline__ void put(unsigned char* dst, long long i, int v, float, float) { dst[i] = (unsigned char)v; }

template <typename Out>
__device__ __forceinline__ void letterbox(
    const unsigned char* __restrict__ src, Out* __restrict__ dst,
    const int4* __restrict__ xtab, const int4* __restrict__ ytab,
    int src_pitch, int out_h, int out_w, int top, int left, int new_h, int new_w, int pad, int swap_rb,
    float k0, float k1, float k2, float b0, float b1, float b2)
{
    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= out_w || oy >= out_h) return;
    const int dx = ox - left;
    const int dy = oy - top;
    int bgr[3] = {pad, pad, pad};
    if (dx >= 0 && dx < new_w && dy >= 0 && dy < new_h) {
        const int4 xt = xtab[dx];
        const int4 yt = ytab[dy];
        bgr[0] = lerp_u8(src, src_pitch, xt, yt, 0);
        bgr[1] = lerp_u8(src, src_pitch, xt, yt, 1);
        bgr[2] = lerp_u8(src, src_pitch, xt, yt, 2);
    }
    const long long plane = (long long)out_h * out_w;
    const long long o = (long long)oy * out_w + ox;
    put(dst, o, bgr[swap_rb ? 2 : 0], k0, b0);
    put(dst, plane + o, bgr[1], k1, b1);
    put(dst, 2 * plane + o, bgr[swap_rb ? 0 : 2], k2, b2);
}

#define EV_LETTERBOX_ENTRY(NAME, OUT)                                                                    \
    extern "C" __global__ void NAME(                                                                     \
        const unsigned char* __restrict__ src, OUT* __restrict__ dst,                                    \
        const int4* __restrict__ xtab, const int4* __restrict__ ytab,                                    \
        int src_pitch, int out_h, int out_w, int top, int left, int new_h, int new_w, int pad,           \
        int swap_rb, float k0, float k1, float k2, float b0, float b1, float b2)                         \
    {                                                                                                    \
        letterbox<OUT>(src, dst, xtab, ytab, src_pitch, out_h, out_w, top, left, new_h, new_w, pad,      \
                       swap_rb, k0, k1, k2, b0, b1, b2);                                                 \
    }

EV_LETTERBOX_ENTRY(letterbox_f32, float)           // float32 CHW
EV_LETTERBOX_ENTRY(letterbox_f16, unsigned short)  // float16 CHW (bits)
EV_LETTERBOX_ENTRY(letterbox_u8, unsigned char)    // uint8 CHW, no normalisation (the graph does it)
