// NOT SHIPPED: the 'v6' variant of backends/_w4_mma.cu measured on an H100 (kernel_bench_notes.md,
// results/kernel_bench_h100_cuda_v6.json): 22.0 us for 1 row vs 20.4 us for the shipped kernel.
// Kept as a record of the instruction-lean variant (110 SASS instructions per 64-k block instead of
// ~130, scales split on the host, running pointers, x prefetched into L1). It expects scales as u32
// (s_hi | s_lo << 16) and scales/zeros pair-interleaved per tile (see the notes).

// ar-kernels `cuda` backend: 4-bit group-wise integer weights x fp16 / bf16 activations on tensor cores.
// Compiled at run time by NVRTC (backends/_nvrtc.py) with the macros below; no header is included.
//
// Weight layout (built by backends/_mma_layout.py): qrep u32 [N/16][K/64][32 lanes][4 words]. A warp
// streams one 16-column tile; lane (g = lane/4, c = lane%4) reads 16 bytes per 64 k, its four words
// kk = 0..3 covering columns n0+g and n0+g+8 at k = 64*kb + 16*c + 4*kk + {0,1,2,3}. Nibble p of a
// word holds column n0+g+8*(p&1), k offset 2*((p>>1)&1) + (p>>2), so that
//   (word >> 4i) & 0x000F000F  (i = 0..3)
// puts the pair (k+0, k+1) or (k+2, k+3) of one column into the two halves of a register: exactly
// the A fragment of mma.m16n8k16 (rows = output columns, reduction slots permuted, see below).
// The activations (B fragment, up to 8 rows per n8 tile) follow the same slot permutation: lane c
// reads x[m][64*kb + 16*c .. +15], 32 contiguous bytes.
//
// Dequantization is the torch backend's bit for bit: w = RN((q - z) * s) in the activation dtype.
// The fp16 scale s is stored split as s = s_hi + s_lo, both bf16 (u32 per group and column: s_hi in
// the low half); s_lo has at most 3 significant bits.
//   bf16: (0x4300 | q) - (128 + z) = q - z exactly; (q - z) * s_lo is exact in bf16, and
//         fma(q - z, s_hi, (q - z) * s_lo) rounds the exact product (q - z) * s once.
//   fp16: (0x6400 | q) - (1024 + z) = q - z exactly; s = s_hi + s_lo rebuilt in fp16 (exact), one
//         fp16 multiply rounds once.
// Scales and zeros are pair-interleaved per tile (columns n0+g and n0+g+8 adjacent): a lane reads
// both of its columns with one load. Accumulation is fp32 (mma); the K split of a block is summed
// in shared memory (no atomics).
//
// Latency: the GPU is saturated with weight loads, so a load that is not issued ahead waits for the
// whole queue (microseconds). Each warp keeps AR_DEPTH 64-k blocks of weights and their scales in
// flight in registers (rings indexed by the unrolled loop: no moves); weights bypass L1, and the
// block's activations are prefetched into L1 at the start, so their loads in the loop hit L1.

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
#define AR_DEPTH 4     // 64-k blocks each warp keeps in flight
#endif
#ifndef AR_MINB
#define AR_MINB 1      // GEMV blocks per SM the registers must allow (launch bounds)
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

__device__ __forceinline__ u32 prmt(u32 a, u32 sel) {
  u32 d; asm("prmt.b32 %0, %1, %1, %2;" : "=r"(d) : "r"(a), "r"(sel)); return d;
}
__device__ __forceinline__ u32x4 ldg_stream(const u32x4* p) {  // weights: read once, keep L1 for x
  u32x4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// One output column's dequantization constants for one group, as packed pairs.
struct Col { u32 zz, shi, slo; };

// sc: (s_hi | s_lo << 16) of one column; z16: its zero point (fp16 value, read when !AR_SYM).
__device__ __forceinline__ Col make_col(u32 sc, u16 z16) {
  Col col;
#if AR_SYM
  const float z = 8.f;
#else
  const float z = h2f(z16);
#endif
#if AR_BF16
  col.shi = prmt(sc, 0x1010u);
  col.slo = prmt(sc, 0x3232u);
#if AR_SYM
  col.zz = 0xC308C308u;  // -136
#else
  col.zz = dup(f2bf(-(AR_BIAS + z)));
#endif
#else
  col.shi = dup(f2h(as_f32(sc << 16) + as_f32(sc & 0xFFFF0000u)));  // s, exact in fp16
  col.slo = 0u;
#if AR_SYM
  col.zz = 0xE408E408u;  // -1032
#else
  col.zz = dup(f2h(-(AR_BIAS + z)));
#endif
#endif
  return col;
}

// Lane c's group for k block kb (all lanes share it when AR_GROUP is a multiple of 64).
__device__ __forceinline__ unsigned group_of(unsigned kb, unsigned c) { return (kb * 64u + 16u * c) / AR_GROUP; }

// The (s_hi|s_lo) words of the lane's two columns (n0+g, n0+g+8) for k block kb, and their zero points.
struct Consts { u32 s0, s1, z; };
__device__ __forceinline__ Consts load_consts(const u32* __restrict__ sp, const u32* __restrict__ zp, unsigned kb,
                                              unsigned c, unsigned np) {
  const unsigned gi = group_of(kb, c);
  const u32* p = sp + gi * np;  // pair-interleaved: the two columns' words are adjacent (8 bytes)
  Consts k;
  asm("ld.global.nc.v2.u32 {%0, %1}, [%2];" : "=r"(k.s0), "=r"(k.s1) : "l"(p));
#if AR_SYM
  k.z = 0u;
#else
  k.z = zp[gi * (np >> 1)];
#endif
  return k;
}

__device__ __forceinline__ void set_cols(const Consts& k, Col& lo, Col& hi) {
  lo = make_col(k.s0, (u16)(k.z & 0xFFFF));
  hi = make_col(k.s1, (u16)(k.z >> 16));
}

// The scale (and zero) words of the k blocks a warp fetches, in order. When groups are whole
// numbers of 64-k blocks (AR_GROUP % 64 == 0) every lane shares the group and a running pointer
// advances once per group; otherwise (groups of 16, 32, 48, ...) each lane computes its own.
struct GroupStream {
  const u32* s;
  const u32* z;
  unsigned kb;  // the next block to fetch
  unsigned c, np;
  __device__ __forceinline__ GroupStream(const u32* sp, const u32* zp, unsigned kb0, unsigned c_, unsigned np_)
      : kb(kb0), c(c_), np(np_) {
    s = sp + (AR_GROUP % 64 == 0 ? group_of(kb0, 0) * np_ : 0u);
    z = zp + (AR_GROUP % 64 == 0 ? group_of(kb0, 0) * (np_ >> 1) : 0u);
  }
  __device__ __forceinline__ Consts next() {  // the constants of block kb, then kb + 1
    Consts k;
    if (AR_GROUP % 64 == 0) {
      k = load_consts(s, z, 0, 0, np);
      ++kb;
      if (kb % (AR_GROUP / 64) == 0) {
        s += np;
        z += np >> 1;
      }
    } else {
      k = load_consts(s, z, kb, c, np);
      ++kb;
    }
    return k;
  }
};

// True when lane c's block kb starts a new group (or is the warp's first block).
__device__ __forceinline__ bool new_group(unsigned kb, unsigned c, bool first) {
  if (AR_GROUP % 64 == 0) return first || kb % (AR_GROUP / 64) == 0;
  return first || group_of(kb, c) != group_of(kb - 1, c);
}

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

// Activations of one k block: lane (g, c) reads x[8 mt + g][64 kb + 16 c .. +15] for each n8 tile
// mt (xr[mt]: this lane's pointer at the block). Rows >= M read row M - 1: a B column only feeds
// the same output row of the mma, and output rows >= M are never stored.
__device__ __forceinline__ void load_x(u32x4* xv, const u16* const* xr, int j) {
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) {
    const u32x4* p = (const u32x4*)(xr[mt] + 64 * j);
    xv[2 * mt] = p[0];
    xv[2 * mt + 1] = p[1];
  }
}

// out (M, N) = x (M, K) @ W (K, N) [+ bias], M <= 8 * AR_MT. Grid: N/16 blocks of AR_KSPLIT warps.
// scales: u32 (ngroups, Np) (s_hi | s_lo << 16), zeros: fp16 (ngroups, Np), both pair-interleaved.
extern "C" __global__ void __launch_bounds__(AR_KSPLIT * 32, AR_MINB)
ar_w4_gemv(const u32x4* __restrict__ qrep, const u32* __restrict__ scales, const u16* __restrict__ zeros,
           const u16* __restrict__ x, const u16* __restrict__ bias, u16* __restrict__ out,
           int M, int N, int Np, int K, int ldx, int ldo, int has_bias) {
  const int tile = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c = lane & 3;
  const int nkb = K >> 6;
  // the block's activations into L1 (128-byte lines), while the weights are requested
  for (int m = 0; m < M; ++m)
    for (int off = 64 * threadIdx.x; off < K; off += 64 * AR_KSPLIT * 32)
      asm volatile("prefetch.global.L1 [%0];" ::"l"(x + (u64)m * ldx + off));
  const int kb0 = nkb * warp / AR_KSPLIT, kb1 = nkb * (warp + 1) / AR_KSPLIT;
  const u32x4* qp = qrep + ((u64)tile * nkb + kb0) * 32 + lane;  // block kb0 + j at qp[32 j]
  const u32* sp = scales + tile * 16 + 2 * g;  // + group * Np: this lane's two columns
  const u32* zp = (const u32*)zeros + tile * 8 + g;
  const u16* xr[AR_MT];  // this lane's x rows at the current block (advanced by 64 per block)
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) xr[mt] = x + (u64)min(8 * mt + g, M - 1) * ldx + kb0 * 64 + 16 * c;
  const int n = kb1 - kb0;

  u32x4 buf[AR_DEPTH];
  Consts kbuf[AR_DEPTH];
  GroupStream gs(sp, zp, kb0, c, Np);
#pragma unroll
  for (int i = 0; i < AR_DEPTH; ++i) {
    if (i < n) {
      buf[i] = ldg_stream(qp + 32 * i);
      kbuf[i] = gs.next();
    }
  }
  qp += 32 * AR_DEPTH;  // the next block to fetch: kb0 + j + AR_DEPTH at iteration j
  float acc[AR_MT][4];
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[mt][j] = 0.f;
  Col lo = {0u, 0u, 0u}, hi = {0u, 0u, 0u};
  for (int j0 = 0; j0 < n; j0 += AR_DEPTH) {
#pragma unroll
    for (int i = 0; i < AR_DEPTH; ++i) {
      const int j = j0 + i;
      if (j < n) {
        u32x4 xv[2 * AR_MT];
        load_x(xv, xr, 0);
#pragma unroll
        for (int mt = 0; mt < AR_MT; ++mt) xr[mt] += 64;
        if (new_group(kb0 + j, c, j == 0)) set_cols(kbuf[i], lo, hi);
        u32 a[4];
        dequant(buf[i].x, lo, hi, a);
#pragma unroll
        for (int mt = 0; mt < AR_MT; ++mt) mma(acc[mt], a, xv[2 * mt].x, xv[2 * mt].y);
        dequant(buf[i].y, lo, hi, a);
#pragma unroll
        for (int mt = 0; mt < AR_MT; ++mt) mma(acc[mt], a, xv[2 * mt].z, xv[2 * mt].w);
        dequant(buf[i].z, lo, hi, a);
#pragma unroll
        for (int mt = 0; mt < AR_MT; ++mt) mma(acc[mt], a, xv[2 * mt + 1].x, xv[2 * mt + 1].y);
        dequant(buf[i].w, lo, hi, a);
#pragma unroll
        for (int mt = 0; mt < AR_MT; ++mt) mma(acc[mt], a, xv[2 * mt + 1].z, xv[2 * mt + 1].w);
        if (j + AR_DEPTH < n) {  // refill this slot, AR_DEPTH blocks ahead
          buf[i] = ldg_stream(qp);
          kbuf[i] = gs.next();
        }
        qp += 32;
      }
    }
  }

  // Sum the K slices: D fragment value j of lane l is (column n0 + l/4 + 8*(j/2), row 2*(l%4) + j%2).
  __shared__ float red[AR_KSPLIT][AR_MT * 4][32];
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
    const int col = tile * 16 + (l >> 2) + 8 * (j >> 1);
    const int m = 8 * mt + 2 * (l & 3) + (j & 1);
    if (m < M && col < N) {
      if (has_bias) s += act2f(bias[col]);
      out[(u64)m * ldo + col] = f2act(s);
    }
  }
}

// W (N, K) in the activation dtype, the torch backend's weight bit for bit (for cuBLAS on large batches).
// Grid: N/16 blocks of 8 warps, each warp a K slice of the block's 16 columns.
extern "C" __global__ void __launch_bounds__(256)
ar_w4_dequant(const u32x4* __restrict__ qrep, const u32* __restrict__ scales, const u16* __restrict__ zeros,
              u32x4* __restrict__ w, int N, int Np, int K) {
  const int tile = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c = lane & 3;
  const int nkb = K >> 6;
  const int kb0 = nkb * warp / 8, kb1 = nkb * (warp + 1) / 8;
  const u32x4* qp = qrep + ((u64)tile * nkb + kb0) * 32 + lane;
  const u32* sp = scales + tile * 16 + 2 * g;
  const u32* zp = (const u32*)zeros + tile * 8 + g;
  const int n_lo = tile * 16 + g, n = kb1 - kb0;
  // row n of W as 16-byte chunks: lane c writes chunks 2 * (4 * kb + c) + {0, 1}
  u32x4* w_lo = w + (u64)n_lo * (K >> 3) + 8 * kb0 + 2 * c;
  u32x4* w_hi = w + (u64)(n_lo + 8) * (K >> 3) + 8 * kb0 + 2 * c;
  const bool ok_lo = n_lo < N, ok_hi = n_lo + 8 < N;
  u32x4 buf[AR_DEPTH];
  Consts kbuf[AR_DEPTH];
  GroupStream gs(sp, zp, kb0, c, Np);
#pragma unroll
  for (int i = 0; i < AR_DEPTH; ++i) {
    if (i < n) {
      buf[i] = ldg_stream(qp + 32 * i);
      kbuf[i] = gs.next();
    }
  }
  Col lo = {0u, 0u, 0u}, hi = {0u, 0u, 0u};
  for (int j0 = 0; j0 < n; j0 += AR_DEPTH) {
#pragma unroll
    for (int i = 0; i < AR_DEPTH; ++i) {
      const int j = j0 + i;
      if (j < n) {
        if (new_group(kb0 + j, c, j == 0)) set_cols(kbuf[i], lo, hi);
        u32 a0[4], a1[4], a2[4], a3[4];
        dequant(buf[i].x, lo, hi, a0);
        dequant(buf[i].y, lo, hi, a1);
        dequant(buf[i].z, lo, hi, a2);
        dequant(buf[i].w, lo, hi, a3);
        if (j + AR_DEPTH < n) {
          buf[i] = ldg_stream(qp + 32 * (j + AR_DEPTH));
          kbuf[i] = gs.next();
        }
        if (ok_lo) {
          w_lo[8 * j] = u32x4{a0[0], a0[2], a1[0], a1[2]};
          w_lo[8 * j + 1] = u32x4{a2[0], a2[2], a3[0], a3[2]};
        }
        if (ok_hi) {
          w_hi[8 * j] = u32x4{a0[1], a0[3], a1[1], a1[3]};
          w_hi[8 * j + 1] = u32x4{a2[1], a2[3], a3[1], a3[3]};
        }
      }
    }
  }
}
