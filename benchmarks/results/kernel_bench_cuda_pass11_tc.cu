// Issue #6, pass 11: the GEMV with the dequantization on the tensor cores. Appended to the shipped _w4_mma.cu
// (AR_KCHUNK 1; its at / ldg / ldg_stream / mma helpers are reused), run by kernel_bench_cuda_pass11.py.
//
// The exact bf16 weight RN((q - z) s) (s fp16) costs three bf16x2 FMA-pipe ops per register pair in the shipped
// GEMV (q - z, the exact low product, the rounding fma), half of its instructions. Here one fp16 mma per 16 x 8
// block computes (q - z) s exactly in fp32: D = diag(s) . T + C, with T the codes as fp16 (1024 + q or 64 + q by
// the magic-number trick, no subtraction), C = -(1024 + z) s or -(64 + z) s per row; then one cvt.rn.bf16x2.f32
// per pair rounds once, as the torch backend does. D's fragment is the A fragment of the bf16 GEMV mma, so no
// data moves between lanes. Codes from the layout of this pass (pack_tc in the script): lane (g, c), word w,
// nibble p holds column 2c + (p >> 2) + 8 (p & 1) and 64-k offset 16 (g >> 1) + 4 w + 2 ((p >> 1) & 1) + (g & 1),
// so that one LOP3 (magic 0x6400 for nibbles 0-3, 0x5400 for 4-7 of each half) makes each B register and the
// x slots of a lane are x[16 c .. 16 c + 15] as in the shipped GEMV.

__device__ __forceinline__ void mma_f16_diag(float (&d)[4], u32 a0, u32 a3, u32 b0, u32 b1, float clo, float chi) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%5,%6}, {%7,%8}, {%9,%9,%10,%10};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a0), "r"(0u), "r"(a3), "r"(b0), "r"(b1), "f"(clo), "f"(chi));
}
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

struct TcStep {
  u32x4 w[AR_NT];
  u32 p[AR_NT];
};

__device__ __forceinline__ void mma_bf16_4(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void tc_load(TcStep& s, const char* wq, u32 cstride, const char* pq, u32 pstride, int kb) {
  const char* w = at(wq, (u32)kb, cstride);
  const char* p = at(pq, (u32)(kb * 64 / AR_GROUP), pstride);
#pragma unroll
  for (int t = 0; t < AR_NT; ++t) {
    s.w[t] = ldg_stream(w + t * 512);
    asm("ld.global.nc.u32 %0, [%1];" : "=r"(s.p[t]) : "l"(p + t * 32));
  }
}

// One 64-k block of every tile: per 16-k slice, two fp16 mmas dequantize 16 columns x 8 k each, two cvts per
// mma round them to bf16 pairs (the GEMV mma's A fragment), one bf16 mma multiplies them with x's slice.
__device__ __forceinline__ void tc_compute(float (&acc)[AR_NT][4], const TcStep& s, const u16* xr, int kb, bool diag,
                                           int hsh) {
  const u32x4 xv0 = ldg(xr + kb * 64), xv1 = ldg(xr + kb * 64 + 8);
#pragma unroll
  for (int t = 0; t < AR_NT; ++t) {
    const u32 sp = s.p[t];  // (s of column g, s of column g + 8), fp16
    const u32 a0 = diag ? (sp & 0xFFFFu) << hsh : 0u, a3 = diag ? (sp >> 16) << hsh : 0u;
    const float clo = -(1024.f + 8.f) * h2f((u16)(sp & 0xFFFFu)), chi = -(64.f + 8.f) * h2f((u16)(sp >> 16));
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const u32 q = w == 0 ? s.w[t].x : w == 1 ? s.w[t].y : w == 2 ? s.w[t].z : s.w[t].w, q8 = q >> 8;
      float d[4], e[4];
      mma_f16_diag(d, a0, a3, lop3_and_or(q, 0x000F000Fu, 0x64006400u), lop3_and_or(q, 0x00F000F0u, 0x54005400u),
                   clo, chi);
      mma_f16_diag(e, a0, a3, lop3_and_or(q8, 0x000F000Fu, 0x64006400u), lop3_and_or(q8, 0x00F000F0u, 0x54005400u),
                   clo, chi);
      const u32x4& xq = (w >> 1) ? xv1 : xv0;
      mma_bf16_4(acc[t], pack_bf16(d[0], d[1]), pack_bf16(d[2], d[3]), pack_bf16(e[0], e[1]), pack_bf16(e[2], e[3]),
                 (w & 1) ? xq.z : xq.x, (w & 1) ? xq.w : xq.y);
    }
  }
}

// out (M, N) = x (M, K) @ W, 1 <= M <= 8, bf16 activations. Grid: N / 16 / AR_NT blocks of AR_KSPLIT warps.
extern "C" __global__ void __launch_bounds__(AR_KSPLIT * 32, AR_MINB)
ar_w4_gemv_tc(const u32x4* __restrict__ qrep, const u32* __restrict__ params, const u16* __restrict__ x,
              u16* __restrict__ out, int M, int N, int K, int ldx, int ldo) {
  const int tile = blockIdx.x * AR_NT, tiles = gridDim.x * AR_NT, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c = lane & 3;
  const int nkb = K >> 6;
  const int kb0 = nkb * warp / AR_KSPLIT, kb1 = nkb * (warp + 1) / AR_KSPLIT;
  const char* wq = reinterpret_cast<const char*>(qrep + (tile * 32 + lane));
  const u32 cstride = (u32)tiles * 512;
  const char* pq = reinterpret_cast<const char*>(params + (tile * 8 + g));
  const u32 pstride = (u32)tiles * 32;
  const u16* xr = x + (u64)min(g, M - 1) * ldx + 16 * c;
  const bool diag = c == (g >> 1);
  const int hsh = (g & 1) * 16;  // the diagonal entry's half in a0 / a3

  float acc[AR_NT][4];
#pragma unroll
  for (int t = 0; t < AR_NT; ++t)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[t][j] = 0.f;

  if (kb0 < kb1) {
    TcStep a, b;
    tc_load(a, wq, cstride, pq, pstride, kb0);
    for (int kb = kb0;; kb += 2) {
      asm volatile("" : "+l"(wq), "+l"(pq));
      if (kb + 1 < kb1) tc_load(b, wq, cstride, pq, pstride, kb + 1);
      tc_compute(acc, a, xr, kb, diag, hsh);
      if (kb + 1 >= kb1) break;
      asm volatile("" : "+l"(wq), "+l"(pq));
      if (kb + 2 < kb1) tc_load(a, wq, cstride, pq, pstride, kb + 2);
      tc_compute(acc, b, xr, kb + 1, diag, hsh);
      if (kb + 2 >= kb1) break;
    }
  }

  __shared__ float red[AR_KSPLIT][AR_NT * 4][32];
#pragma unroll
  for (int t = 0; t < AR_NT; ++t)
#pragma unroll
    for (int j = 0; j < 4; ++j) red[warp][t * 4 + j][lane] = acc[t][j];
  __syncthreads();
  for (int v = threadIdx.x; v < AR_NT * 4 * 32; v += AR_KSPLIT * 32) {
    const int l = v & 31, r = v >> 5, t = r >> 2, j = r & 3;
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < AR_KSPLIT; ++w) sum += red[w][r][l];
    const int n = (tile + t) * 16 + (l >> 2) + 8 * (j >> 1), m = 2 * (l & 3) + (j & 1);
    if (m < M && n < N) out[(u64)m * ldo + n] = f2act(sum);
  }
}
