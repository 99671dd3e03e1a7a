// ar-kernels `cuda` backend: 4-bit group-wise integer weights x fp16 / bf16 activations on tensor cores.
// Compiled at run time by NVRTC (backends/_nvrtc.py) with the macros below; no header is included.
//
// Weight layout (built by backends/_mma_layout.py): 16-byte chunks u32x4 [K/64/P][N/16][P][32 lanes],
// P = AR_KCHUNK 64-k blocks stored together per 16-column tile (P = 1: k-block-major, the chunks of
// one 64-k block for all tiles are contiguous, so the warps working on one k step read one span;
// AR_KCHUNK 0: P = K/64, tile-major, every warp its own stream). A warp streams one 16-column tile;
// lane (g = lane/4, c = lane%4) reads 16 bytes per 64 k, its four words kk = 0..3 covering columns
// n0+g and n0+g+8 at k = 64*kb + 16*c + 4*kk + {0,1,2,3}. Nibble p of a word holds column
// n0+g+8*(p&1), k offset 2*((p>>1)&1) + (p>>2), so that
//   (word >> 4i) & 0x000F000F  (i = 0..3)
// puts the pair (k+0, k+1) or (k+2, k+3) of one column into the two halves of a register: exactly
// the A fragment of mma.m16n8k16 (rows = output columns, reduction slots permuted, see below).
// The activations (B fragment, up to 8 rows per n8 tile) follow the same slot permutation: lane c
// reads x[m][64*kb + 16*c .. +15], 32 contiguous bytes.
//
// Dequantization is the torch backend's bit for bit: w = RN((q - z) * s) in the activation dtype.
//   fp16: (0x6400 | q) - (1024 + z) = q - z exactly; one fp16 multiply by s rounds once.
//   bf16: (0x4300 | q) - (128 + z) = q - z exactly; s (fp16, 11 bits) = s_hi + s_lo with s_hi, s_lo
//         bf16 (s_lo has <= 3 bits), (q - z) * s_lo is exact in bf16, and fma((q - z), s_hi, that)
//         rounds the exact product (q - z) * s once.
// Accumulation is fp32 (mma), the K split of a block is summed in shared memory (no atomics).
//
// Speed (H100, 4096 x 14336): benchmarks/kernel_bench_notes.md, with the variants tried.

#ifndef AR_BF16
#define AR_BF16 1      // activations bf16 (1) or fp16 (0)
#endif
#ifndef AR_SYM
#define AR_SYM 1       // every zero point is 8: no zeros array
#endif
#ifndef AR_GROUP
#define AR_GROUP 128   // input channels per group: a multiple of 16
#endif
#ifndef AR_MT
#define AR_MT 1        // n8 tiles of activation rows: up to 8 * AR_MT rows per launch
#endif
#ifndef AR_KSPLIT
#define AR_KSPLIT 4    // warps per block, each one K slice of the block's 16 columns
#endif
#ifndef AR_DEPTH
#define AR_DEPTH 4     // 16-byte weight loads each lane keeps in flight
#endif
#ifndef AR_KCHUNK
#define AR_KCHUNK 1    // P, 64-k blocks stored together per tile (a power of 2); 0: all of K (tile-major)
#endif
#ifndef AR_RING
#define AR_RING 1      // weight blocks in flight: 1 in a per-lane cp.async ring in shared memory, 0 in registers
#endif
#ifndef AR_SPREF
#define AR_SPREF 1     // scales (and zero points) prefetched into L1 AR_DEPTH blocks ahead (no registers)
#endif

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
struct alignas(16) u32x4 { u32 x, y, z, w; };

#if AR_BF16
#define AR_MAGIC 0x43004300u   // 128.0 in both halves: 128 + q for q < 16 is exact
#define AR_ONE 0x3F803F80u
#define AR_BIAS 128.f
#else
#define AR_MAGIC 0x64006400u   // 1024.0
#define AR_ONE 0x3C003C00u
#define AR_BIAS 1024.f
#endif
#define AR_NEG0 0x80008000u    // -0.0: fma(a, b, -0) is a*b rounded once

__device__ __forceinline__ float as_f32(u32 u) { float f; asm("mov.b32 %0, %1;" : "=f"(f) : "r"(u)); return f; }
__device__ __forceinline__ float h2f(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 f2bf(float f) { u16 h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
__device__ __forceinline__ u16 f2h(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
__device__ __forceinline__ u32 dup(u16 h) { return (u32)h | ((u32)h << 16); }

__device__ __forceinline__ float act2f(u16 h) {
#if AR_BF16
  return as_f32((u32)h << 16);
#else
  return h2f(h);
#endif
}
__device__ __forceinline__ u16 f2act(float f) {
#if AR_BF16
  return f2bf(f);
#else
  return f2h(f);
#endif
}

__device__ __forceinline__ u32 lop3_and_or(u32 a, u32 b, u32 c) {  // (a & b) | c
  u32 d; asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(b), "r"(c)); return d;
}
__device__ __forceinline__ u32 fma2(u32 a, u32 b, u32 c) {
  u32 d;
#if AR_BF16
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
#else
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
#endif
  return d;
}

// One output column's dequantization constants for one group, as packed pairs.
struct Col { u32 zz, shi, slo; };

// The raw fp16 scales (and zero points) of a lane's two columns n and n + 8 in one group.
struct Raw { u16 s0, s1, z0, z1; };

__device__ __forceinline__ Raw load_raw(const u16* __restrict__ scales, const u16* __restrict__ zeros, int idx) {
  Raw r;
  r.s0 = scales[idx];
  r.s1 = scales[idx + 8];
#if AR_SYM
  r.z0 = r.z1 = 0;
#else
  r.z0 = zeros[idx];
  r.z1 = zeros[idx + 8];
#endif
  return r;
}

__device__ __forceinline__ Col make_col(u16 s16, u16 z16) {
  Col col;
#if AR_SYM
  const float z = 8.f;
#else
  const float z = h2f(z16);
#endif
#if AR_BF16
  const float s = h2f(s16);
  const u16 hi = f2bf(s);
  col.shi = dup(hi);
  col.slo = dup(f2bf(s - as_f32((u32)hi << 16)));  // exact: the low bits of an 11-bit significand
  col.zz = dup(f2bf(-(AR_BIAS + z)));
#else
  col.shi = dup(s16);
  col.slo = 0u;
  col.zz = dup(f2h(-(AR_BIAS + z)));
#endif
  return col;
}

// Lane `lane` of tile `tile` finds 64-k block k at chunk ((k / P) * tiles + tile) * P * 32 + (k % P) * 32 + lane.
struct WeightStream {
  const u32x4* base;  // qrep + tile * P * 32 + lane
  u32 outer;          // tiles * P * 32: P blocks of every tile
  __device__ __forceinline__ WeightStream(const u32x4* qrep, int tile, int lane, int tiles, int nkb) {
    const u32 p = AR_KCHUNK ? AR_KCHUNK : nkb;
    base = qrep + (u64)tile * p * 32 + lane;
    outer = (u32)tiles * p * 32;
  }
  __device__ __forceinline__ const u32x4* ptr(int k) const {
#if AR_KCHUNK
    return base + ((u32)k / AR_KCHUNK * outer + (u32)k % AR_KCHUNK * 32);
#else
    return base + (u32)k * 32;
#endif
  }
  __device__ __forceinline__ u32x4 operator[](int k) const { return *ptr(k); }
};

// The group of lane c's 16 input channels in 64-k block k (AR_GROUP is a multiple of 16).
__device__ __forceinline__ int group_of(int k, int c) { return (int)(((u32)k * 64 + 16 * c) / AR_GROUP); }

__device__ __forceinline__ u32 smem_addr(const void* p) {
  u32 a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
__device__ __forceinline__ void cp_async16(u32 dst, const void* src) {  // global -> shared, bypassing L1
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
__device__ __forceinline__ void prefetch_l1(const void* p) { asm volatile("prefetch.global.L1 [%0];" :: "l"(p)); }

__device__ __forceinline__ u32 deq(u32 t, const Col& col) {
  const u32 d = fma2(t, AR_ONE, col.zz);  // q - z, exact
#if AR_BF16
  return fma2(d, col.shi, fma2(d, col.slo, AR_NEG0));
#else
  return fma2(d, col.shi, AR_NEG0);
#endif
}

// The four A registers of one word: (col g, k+0..1), (col g+8, k+0..1), (col g, k+2..3), (col g+8, k+2..3).
__device__ __forceinline__ void dequant(u32 q, const Col& lo, const Col& hi, u32* a) {
  a[0] = deq(lop3_and_or(q, 0x000F000Fu, AR_MAGIC), lo);
  a[1] = deq(lop3_and_or(q >> 4, 0x000F000Fu, AR_MAGIC), hi);
  a[2] = deq(lop3_and_or(q >> 8, 0x000F000Fu, AR_MAGIC), lo);
  a[3] = deq(lop3_and_or(q >> 12, 0x000F000Fu, AR_MAGIC), hi);
}

__device__ __forceinline__ void mma(float* d, const u32* a, u32 b0, u32 b1) {
#if AR_BF16
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#else
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
#endif
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// One 64-k block k of the GEMV: the lane's four words q dequantized and multiplied with x's rows.
__device__ __forceinline__ void gemv_block(float (&acc)[AR_MT][4], const u16* const (&xr)[AR_MT], const u32x4& q,
                                           const Col& lo, const Col& hi, int k) {
  u32x4 xv[AR_MT][2];
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) {
    const u32x4* p = (const u32x4*)(xr[mt] + (u32)k * 64);
    xv[mt][0] = p[0];
    xv[mt][1] = p[1];
  }
  u32 a[4];
  dequant(q.x, lo, hi, a);
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) mma(acc[mt], a, xv[mt][0].x, xv[mt][0].y);
  dequant(q.y, lo, hi, a);
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) mma(acc[mt], a, xv[mt][0].z, xv[mt][0].w);
  dequant(q.z, lo, hi, a);
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) mma(acc[mt], a, xv[mt][1].x, xv[mt][1].y);
  dequant(q.w, lo, hi, a);
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) mma(acc[mt], a, xv[mt][1].z, xv[mt][1].w);
}

// out (M, N) = x (M, K) @ W (K, N) [+ bias], 1 <= M <= 8 * AR_MT. Grid: N/16 blocks of AR_KSPLIT warps.
extern "C" __global__ void __launch_bounds__(AR_KSPLIT * 32)
ar_w4_gemv(const u32x4* __restrict__ qrep, const u16* __restrict__ scales, const u16* __restrict__ zeros,
           const u16* __restrict__ x, const u16* __restrict__ bias, u16* __restrict__ out,
           int M, int N, int Np, int K, int ldx, int ldo, int has_bias) {
  const int tile = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c = lane & 3;
  const int nkb = K >> 6;
  const int kb0 = nkb * warp / AR_KSPLIT, kb1 = nkb * (warp + 1) / AR_KSPLIT;
  const WeightStream wq(qrep, tile, lane, Np >> 4, nkb);
  const int n_lo = tile * 16 + g;

  // Rows past M read row M - 1: an mma output row depends on its own x row only, and it is not stored.
  float acc[AR_MT][4];
  const u16* xr[AR_MT];
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) {
    xr[mt] = x + (u64)min(8 * mt + g, M - 1) * ldx + 16 * c;
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[mt][j] = 0.f;
  }

  // Shared memory: the cp.async ring (AR_RING), then the K-split sums.
  constexpr int kRingBytes = AR_RING ? (AR_DEPTH + 1) * AR_KSPLIT * 512 : 0;
  constexpr int kRedBytes = AR_KSPLIT * AR_MT * 4 * 32 * 4;
  __shared__ u32x4 smem[(kRingBytes > kRedBytes ? kRingBytes : kRedBytes) / 16];

  // The scales of block k's group, converted when the group changes; AR_SPREF: prefetched ahead.
  Col lo = {0u, 0u, 0u}, hi = {0u, 0u, 0u};
  int cur = -1;
#define AR_COLS(k)                                                  \
  if (group_of(k, c) != cur) {                                      \
    cur = group_of(k, c);                                           \
    const Raw r = load_raw(scales, zeros, cur * Np + n_lo);         \
    lo = make_col(r.s0, r.z0);                                      \
    hi = make_col(r.s1, r.z1);                                      \
  }
#if AR_SPREF && AR_SYM
#define AR_SPREFETCH(k) prefetch_l1(scales + group_of(k, c) * Np + n_lo)
#elif AR_SPREF
#define AR_SPREFETCH(k) (prefetch_l1(scales + group_of(k, c) * Np + n_lo), \
                         prefetch_l1(zeros + group_of(k, c) * Np + n_lo))
#else
#define AR_SPREFETCH(k) ((void)0)
#endif

#if AR_RING
  // Each lane's own ring of R = AR_DEPTH + 1 16-byte slots in shared memory, filled by cp.async (no
  // registers held, no barrier: a lane reads only what it copied). At the top of an iteration slot i
  // holds block kb + i; step i first starts block k + AR_DEPTH into the slot step i - 1 read, then
  // waits for block k. Loads past kb1 are clamped to the last block (never used).
  constexpr int R = AR_DEPTH + 1;
  u32x4 (*ring)[AR_KSPLIT][32] = reinterpret_cast<u32x4 (*)[AR_KSPLIT][32]>(smem);
  const u32 slot0 = smem_addr(&ring[0][warp][lane]);
  const int klast = max(kb1 - 1, 0);  // a warp with no blocks (K / 64 < AR_KSPLIT) reads block 0
#pragma unroll
  for (int i = 0; i < AR_DEPTH; ++i) {
    cp_async16(slot0 + i * (AR_KSPLIT * 512), wq.ptr(min(kb0 + i, klast)));
    cp_async_commit();
  }
  int kb = kb0;
  for (; kb + R <= kb1; kb += R) {
#pragma unroll
    for (int i = 0; i < R; ++i) {
      const int k = kb + i, kn = min(k + AR_DEPTH, klast);
      cp_async16(slot0 + (i + AR_DEPTH) % R * (AR_KSPLIT * 512), wq.ptr(kn));
      cp_async_commit();
      AR_SPREFETCH(kn);
      cp_async_wait<AR_DEPTH>();  // block k's group is done; the AR_DEPTH after it may be in flight
      const u32x4 q = ring[i][warp][lane];
      AR_COLS(k)
      gemv_block(acc, xr, q, lo, hi, k);
    }
  }
  cp_async_wait<0>();  // the last <= AR_DEPTH blocks, in slots 0 ..
#pragma unroll
  for (int i = 0; i < AR_DEPTH; ++i) {
    const int k = kb + i;
    if (k < kb1) {
      const u32x4 q = ring[i][warp][lane];
      AR_COLS(k)
      gemv_block(acc, xr, q, lo, hi, k);
    }
  }
#else
  // A ring of AR_DEPTH blocks in registers. Step k takes its block out of slot k % AR_DEPTH and loads
  // block k + AR_DEPTH there first. (The per-step guards keep each step a basic block: without them
  // ptxas sinks all the refills to the end of the unrolled body.)
  u32x4 buf[AR_DEPTH];
#pragma unroll
  for (int i = 0; i < AR_DEPTH; ++i)
    if (kb0 + i < kb1) buf[i] = wq[kb0 + i];
  for (int kb = kb0; kb < kb1; kb += AR_DEPTH) {
#pragma unroll
    for (int i = 0; i < AR_DEPTH; ++i) {
      const int k = kb + i;
      if (k < kb1) {
        const u32x4 q = buf[i];
        if (k + AR_DEPTH < kb1) {
          buf[i] = wq[k + AR_DEPTH];
          AR_SPREFETCH(k + AR_DEPTH);
        }
        AR_COLS(k)
        gemv_block(acc, xr, q, lo, hi, k);
      }
    }
  }
#endif
#undef AR_SPREFETCH
#undef AR_COLS

  // Sum the K slices: D fragment value j of lane l is (column n0 + l/4 + 8*(j/2), row 2*(l%4) + j%2).
  float (*red)[AR_MT * 4][32] = reinterpret_cast<float (*)[AR_MT * 4][32]>(smem);
#if AR_RING
  __syncthreads();  // the ring's last reads are done before the sums overwrite it
#endif
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt)
#pragma unroll
    for (int j = 0; j < 4; ++j) red[warp][mt * 4 + j][lane] = acc[mt][j];
  __syncthreads();
  for (int v = threadIdx.x; v < AR_MT * 4 * 32; v += AR_KSPLIT * 32) {
    const int l = v & 31, r = v >> 5, mt = r >> 2, j = r & 3;
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < AR_KSPLIT; ++w) s += red[w][r][l];
    const int n = tile * 16 + (l >> 2) + 8 * (j >> 1);
    const int m = 8 * mt + 2 * (l & 3) + (j & 1);
    if (m < M && n < N) {
      if (has_bias) s += act2f(bias[n]);
      out[(u64)m * ldo + n] = f2act(s);
    }
  }
}

// W (N, K) in the activation dtype, the torch backend's weight bit for bit (for cuBLAS on large batches).
// Grid: N/16 blocks of 8 warps, each warp a K slice of the block's 16 columns.
extern "C" __global__ void __launch_bounds__(256)
ar_w4_dequant(const u32x4* __restrict__ qrep, const u16* __restrict__ scales, const u16* __restrict__ zeros,
              u32x4* __restrict__ w, int N, int Np, int K) {
  const int tile = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c = lane & 3;
  const int nkb = K >> 6;
  const int kb0 = nkb * warp / 8, kb1 = nkb * (warp + 1) / 8;
  const WeightStream wq(qrep, tile, lane, Np >> 4, nkb);
  const int n_lo = tile * 16 + g;
  // row n of W as 16-byte chunks: lane c writes chunks 2 * (4 * kb + c) + {0, 1}
  u32x4* w_lo = w + (u64)n_lo * (K >> 3) + 2 * c;
  u32x4* w_hi = w + (u64)(n_lo + 8) * (K >> 3) + 2 * c;
  const bool ok_lo = n_lo < N, ok_hi = n_lo + 8 < N;
  Col lo = {0u, 0u, 0u}, hi = {0u, 0u, 0u};
  int cur = -1;
#pragma unroll 4
  for (int k = kb0; k < kb1; ++k) {
    const u32x4 q = wq[k];
    const int gi = group_of(k, c);
    if (gi != cur) {
      cur = gi;
      const Raw r = load_raw(scales, zeros, gi * Np + n_lo);
      lo = make_col(r.s0, r.z0);
      hi = make_col(r.s1, r.z1);
    }
    u32 a0[4], a1[4], a2[4], a3[4];
    dequant(q.x, lo, hi, a0);
    dequant(q.y, lo, hi, a1);
    dequant(q.z, lo, hi, a2);
    dequant(q.w, lo, hi, a3);
    if (ok_lo) {
      w_lo[8 * k] = u32x4{a0[0], a0[2], a1[0], a1[2]};
      w_lo[8 * k + 1] = u32x4{a2[0], a2[2], a3[0], a3[2]};
    }
    if (ok_hi) {
      w_hi[8 * k] = u32x4{a0[1], a0[3], a1[1], a1[3]};
      w_hi[8 * k + 1] = u32x4{a2[1], a2[3], a3[1], a3[3]};
    }
  }
}
