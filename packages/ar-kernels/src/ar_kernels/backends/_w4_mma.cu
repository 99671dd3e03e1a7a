// ar-kernels `cuda` backend: 4-bit group-wise integer weights x fp16 / bf16 activations on tensor cores.
// Compiled at run time by NVRTC (backends/_nvrtc.py) with the macros below; no header is included.
//
// Weight layout (built by backends/_mma_layout.py): 16-byte chunks u32x4 [K/64/P][N/16][P][32 lanes],
// P = AR_KCHUNK 64-k blocks of a 16-column tile stored together (2 KB for P = 4), the chunks of one
// P-block k step for all tiles contiguous. A warp streams one tile; lane (g = lane/4, c = lane%4) reads 16 bytes per 64 k, its four words kk = 0..3 covering
// columns n0+g and n0+g+8 at k = 64*kb + 16*c + 4*kk + {0,1,2,3}. Nibble p of a word holds column
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
// The GEMV reads these constants ready-made (the layer's `gemv_params`, built once at load by
// cuda.py): per group, tile and g, AR_PW words {s_hi pair, s_lo pair, -(128 + z) pair, 0} (bf16) or
// {s pair, -(1024 + z) pair} (fp16), each pair = (column n0+g, column n0+g+8), the zero-point words
// only where zero points vary (AR_SYM 0). The dequantization kernel converts the fp16 scales itself.
// Accumulation is fp32 (mma), the K split of a block is summed in shared memory (no atomics).
// A warp may take AR_NT adjacent tiles (their chunks AR_KCHUNK * 512 bytes apart, their constants
// 8 * AR_PW words): one x load, one address and one loop for AR_NT tiles' words.
//
// Speed (H100, 4096 x 14336): benchmarks/kernel_bench_notes.md, with the variants tried.

#ifndef AR_BF16
#define AR_BF16 1      // activations bf16 (1) or fp16 (0)
#endif
#ifndef AR_SYM
#define AR_SYM 1       // every zero point is 8: no zero-point words
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
#define AR_DEPTH 2     // 64-k blocks per step; each lane loads the next step's while it computes one
#endif
#ifndef AR_MINB
#define AR_MINB 8      // GEMV blocks that must fit one SM (bounds the registers: 64K / (AR_MINB * AR_KSPLIT * 32))
#endif
#ifndef AR_NT
#define AR_NT 1        // 16-column tiles per warp (grid: tiles / AR_NT blocks; tiles a multiple of AR_NT)
#endif
#ifndef AR_NACC
#define AR_NACC 2      // accumulator sets (blocks alternate between them)
#endif
#ifndef AR_XSMEM
#define AR_XSMEM 0     // 1: the block stages x's rows in shared memory first (dynamic, rows * (K + 8) * 2 bytes)
#endif
#ifndef AR_PF0
#define AR_PF0 1       // 64-k blocks of its weight each warp prefetches to L2 before it waits for the previous kernel
#endif
#ifndef AR_KCHUNK
#define AR_KCHUNK 2    // P, 64-k blocks stored together per tile: the layout's kchunk, a power of 2 dividing AR_DEPTH
#endif

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
struct alignas(16) u32x4 { u32 x, y, z, w; };

#if AR_BF16
#define AR_MAGIC 0x43004300u   // 128.0 in both halves: 128 + q for q < 16 is exact
#define AR_ONE 0x3F803F80u
#define AR_BIAS 128.f
#define AR_ZSYM 0xC308C308u    // -(128 + 8)
#define AR_PW (AR_SYM ? 2 : 4)
#else
#define AR_MAGIC 0x64006400u   // 1024.0
#define AR_ONE 0x3C003C00u
#define AR_BIAS 1024.f
#define AR_ZSYM 0xE408E408u    // -(1024 + 8)
#define AR_PW (AR_SYM ? 1 : 2)
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
template <int SEL>
__device__ __forceinline__ u32 prmt(u32 a) {  // bytes of a picked by SEL (0x1010: low half twice, 0x3232: high)
  u32 d; asm("prmt.b32 %0, %1, 0, %2;" : "=r"(d) : "r"(a), "n"(SEL)); return d;
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

__device__ __forceinline__ u32 add2(u32 a, u32 b) {
  u32 d;
#if AR_BF16 && __CUDA_ARCH__ >= 900
  asm("add.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
#elif AR_BF16
  d = fma2(a, AR_ONE, b);  // sm_80 has no bf16x2 add
#else
  asm("add.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
#endif
  return d;
}

__device__ __forceinline__ u32 deq(u32 t, const Col& col) {
  const u32 d = add2(t, col.zz);  // q - z, exact
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

// The group of lane c's 16 input channels in 64-k block k (AR_GROUP is a multiple of 16).
__device__ __forceinline__ int group_of(int k, int c) { return (int)(((u32)k * 64 + 16 * c) / AR_GROUP); }

// ---- GEMV ---------------------------------------------------------------------------------------

// Read-only global loads (the kernel writes none of these buffers); constant offsets from one
// address fold into the instruction. The weight is read once: it does not stay in L1.
__device__ __forceinline__ u32x4 ldg(const void* p) {
  u32x4 v;
  asm("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ u32x4 ldg_stream(const void* p) {
  u32x4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// A lane's x pointer: a shared-memory byte address (AR_XSMEM) or a global one, advanced in elements.
#if AR_XSMEM
typedef u32 XPtr;
__device__ __forceinline__ XPtr xadd(XPtr p, int elems) { return p + 2u * (u32)elems; }
__device__ __forceinline__ u32x4 load_x(XPtr p) {
  u32x4 v;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(p));
  return v;
}
#define AR_XPIN(p) asm volatile("" : "+r"(p))
#else
typedef const u16* XPtr;
__device__ __forceinline__ XPtr xadd(XPtr p, int elems) { return p + elems; }
__device__ __forceinline__ u32x4 load_x(XPtr p) { return ldg(p); }
#define AR_XPIN(p) asm volatile("" : "+l"(p))
#endif

// A lane's ready-made constants for one group (see the header): AR_PW words, one load.
struct Par { u32 w[AR_PW]; };

__device__ __forceinline__ Par load_par(const void* p) {
  Par r;
#if AR_PW == 4
  asm("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.w[0]), "=r"(r.w[1]), "=r"(r.w[2]), "=r"(r.w[3]) : "l"(p));
#elif AR_PW == 2
  asm("ld.global.nc.v2.u32 {%0,%1}, [%2];" : "=r"(r.w[0]), "=r"(r.w[1]) : "l"(p));
#else
  asm("ld.global.nc.u32 %0, [%1];" : "=r"(r.w[0]) : "l"(p));
#endif
  return r;
}

// Column g (h = 0) or g + 8 (h = 1) of a group's constants, each value in both halves.
template <int H>
__device__ __forceinline__ Col col_of(const Par& p) {
  constexpr int SEL = H ? 0x3232 : 0x1010;
  Col col;
  col.shi = prmt<SEL>(p.w[0]);
#if AR_BF16
  col.slo = prmt<SEL>(p.w[1]);
#else
  col.slo = 0u;
#endif
#if AR_SYM
  col.zz = AR_ZSYM;
#else
  col.zz = prmt<SEL>(p.w[AR_BF16 ? 2 : 1]);
#endif
  return col;
}

// Blocks that share one load of constants (AR_PB) and loads per step (AR_NP). Where a group is a
// whole number of 64-k blocks and steps are aligned to groups (or groups to steps) the loads sit at
// fixed blocks of a step (warps start on a step boundary); otherwise every block loads its own.
#if AR_GROUP % 64 == 0 && AR_DEPTH % (AR_GROUP / 64) == 0
#define AR_PB (AR_GROUP / 64)
#elif AR_GROUP % 64 == 0 && (AR_GROUP / 64) % AR_DEPTH == 0
#define AR_PB AR_DEPTH
#else
#define AR_PB 1
#endif
#define AR_NP (AR_DEPTH / AR_PB)

// One step: AR_DEPTH consecutive 64-k blocks of a lane's weight and their constants, in registers.
struct Step {
  u32x4 w[AR_NT][AR_DEPTH];
  Par p[AR_NT][AR_NP];
};

// base + i * stride bytes in one instruction (IMAD.WIDE.U32).
__device__ __forceinline__ const char* at(const void* base, u32 i, u32 stride) {
  u64 r;
  asm("mad.wide.u32 %0, %1, %2, %3;" : "=l"(r) : "r"(i), "r"(stride), "l"(base));
  return reinterpret_cast<const char*>(r);
}

struct Gemv {
  const char* wq;       // qrep + tile * P * 32 + lane: chunk i (P blocks) at wq + i * cstride bytes
  u32 cstride;          // tiles * P * 512
  const char* pq;       // params + (tile * 8 + g) * AR_PW: group i at pq + i * pstride bytes
  u32 pstride;          // tiles * 32 * AR_PW
  XPtr xr[AR_MT];       // x row of each n8 tile's lane g, + 16 c
  int c, kb1;

  // Loads step kb (a multiple of AR_DEPTH); FULL: all of its blocks are < kb1 (else only those that are).
  // The layout's chunk P divides AR_DEPTH: one address per chunk, then immediate offsets.
  template <bool FULL>
  __device__ __forceinline__ void load(Step& s, int kb) const {
#pragma unroll
    for (int h = 0; h < AR_DEPTH / AR_KCHUNK; ++h) {
      const char* w = at(wq, (u32)kb / AR_KCHUNK + h, cstride);
#pragma unroll
      for (int i = 0; i < AR_KCHUNK; ++i)
        if (FULL || kb + h * AR_KCHUNK + i < kb1)
#pragma unroll
          for (int t = 0; t < AR_NT; ++t) s.w[t][h * AR_KCHUNK + i] = ldg_stream(w + (t * AR_KCHUNK + i) * 512);
    }
#pragma unroll
    for (int j = 0; j < AR_NP; ++j)
      if (FULL || kb + j * AR_PB < kb1) {
        const char* pp = at(pq, group_of(kb + j * AR_PB, c), pstride);
#pragma unroll
        for (int t = 0; t < AR_NT; ++t) s.p[t][j] = load_par(pp + t * 32 * AR_PW);
      }
  }

  // Multiplies step kb into the two accumulators (even and odd blocks).
  template <bool FULL>
  __device__ __forceinline__ void compute(float (&acc)[AR_NACC][AR_NT][AR_MT][4], const Step& s, int kb) const {
    XPtr xs[AR_MT];
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) xs[mt] = xadd(xr[mt], kb * 64);
#pragma unroll
    for (int j = 0; j < AR_NP; ++j) {
      if (!FULL && kb + j * AR_PB >= kb1) break;
      Col lo[AR_NT], hi[AR_NT];
#pragma unroll
      for (int t = 0; t < AR_NT; ++t) lo[t] = col_of<0>(s.p[t][j]), hi[t] = col_of<1>(s.p[t][j]);
#pragma unroll
      for (int ii = 0; ii < AR_PB; ++ii) {
        const int i = j * AR_PB + ii;
        if (FULL || kb + i < kb1) block(acc[i % AR_NACC], s, i, lo, hi, xs, i * 64);
      }
    }
  }

  // One 64-k block of every tile: the lane's four words per tile dequantized and multiplied with x's
  // rows (at xs + off), the x loads shared by the tiles.
  __device__ __forceinline__ void block(float (&acc)[AR_NT][AR_MT][4], const Step& s, int i, const Col (&lo)[AR_NT],
                                        const Col (&hi)[AR_NT], const XPtr (&xs)[AR_MT], int off) const {
    u32x4 xv[AR_MT][2];
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) {
      xv[mt][0] = load_x(xadd(xs[mt], off));
      xv[mt][1] = load_x(xadd(xs[mt], off + 8));
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
      for (int t = 0; t < AR_NT; ++t) {
        const u32x4& q = s.w[t][i];
        const u32 qw = kk == 0 ? q.x : kk == 1 ? q.y : kk == 2 ? q.z : q.w;
        u32 a[4];
        dequant(qw, lo[t], hi[t], a);
#pragma unroll
        for (int mt = 0; mt < AR_MT; ++mt) {
          const u32x4& xq = xv[mt][kk >> 1];
          mma(acc[t][mt], a, (kk & 1) ? xq.z : xq.x, (kk & 1) ? xq.w : xq.y);
        }
      }
    }
  }

  // Computes step kb from `cur` after starting the loads of step kb + AR_DEPTH into `nxt`. False
  // where kb was the warp's last step.
  __device__ __forceinline__ bool step(float (&acc)[AR_NACC][AR_NT][AR_MT][4], const Step& cur, Step& nxt, int kb) {
    // The base addresses pass through an empty asm each step: ptxas then keeps them in registers
    // instead of recomputing them from the thread index and the arguments (~20 instructions a step).
    asm volatile("" : "+l"(wq), "+l"(pq));
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) AR_XPIN(xr[mt]);
    if (kb + AR_DEPTH > kb1) {  // the last step, partial
      compute<false>(acc, cur, kb);
      return false;
    }
    load_any(nxt, kb + AR_DEPTH);
    compute<true>(acc, cur, kb);
    return kb + AR_DEPTH < kb1;
  }

  // The warp's K loop from kb0, whose loads are in `a`.
  __device__ __forceinline__ void run(float (&acc)[AR_NACC][AR_NT][AR_MT][4], Step& a, Step& b, int kb0) {
    for (int kb = kb0;; kb += 2 * AR_DEPTH) {
      if (!step(acc, a, b, kb)) break;
      if (!step(acc, b, a, kb + AR_DEPTH)) break;
    }
  }

  // L2 prefetches of the warp's first n 64-k blocks of weight (no registers, nothing to wait for).
  __device__ __forceinline__ void prefetch_l2(int kb0, int n) const {
    for (int kb = kb0; kb < min(kb0 + n, kb1); ++kb)
#pragma unroll
      for (int t = 0; t < AR_NT; ++t)
        asm volatile("prefetch.global.L2 [%0];" :: "l"(at(wq, (u32)kb / AR_KCHUNK, cstride)
                                                      + (t * AR_KCHUNK + kb % AR_KCHUNK) * 512));
  }

  // Loads step kb where it is (partly) in the warp's slice.
  __device__ __forceinline__ void load_any(Step& s, int kb) const {
    if (kb + AR_DEPTH <= kb1) load<true>(s, kb);
    else if (kb < kb1) load<false>(s, kb);
  }
};

#if AR_XSMEM
// The block's rows of x go to shared memory (16-byte async copies; rows K + 8 elements apart, so that 8 rows
// fall on different banks), where every warp then reads its x instead of from L1 / L2. Returns the shared
// address of row 0; the copies are waited for (with a block barrier) after the first weight loads are issued.
__device__ __forceinline__ u32 x_stage(const u16* __restrict__ x, int M, int K, int ldx) {
  extern __shared__ __align__(16) u16 xsm[];
  u32 base;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(base) : "l"(xsm));
  const int rows = min(M, 8 * AR_MT), per_row = K >> 3;
  const u32 row_bytes = (u32)(K + 8) * 2u;
  for (int v = threadIdx.x; v < rows * per_row; v += AR_KSPLIT * 32) {
    const int r = v / per_row, ch = v - r * per_row;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(base + r * row_bytes + ch * 16u),
                 "l"(x + (u64)r * ldx + ch * 8));
  }
  return base;
}
#endif

// Programmatic dependent launch (sm_90+; no-ops in a plain launch): the next kernel, if launched as a dependent,
// may start once every block of this one has begun; this one, so launched, may start before the previous kernel
// ends and waits for it (its completion and memory) before it reads x or writes anything.
__device__ __forceinline__ void pdl_release() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// out (M, N) = x (M, K) @ W (K, N) [+ bias], 1 <= M <= 8 * AR_MT. Grid: N/16 blocks of AR_KSPLIT warps;
// warp w takes steps [S w / AR_KSPLIT, S (w + 1) / AR_KSPLIT) of the S = ceil(K / 64 / AR_DEPTH).
extern "C" __global__ void __launch_bounds__(AR_KSPLIT * 32, AR_MINB)
ar_w4_gemv(const u32x4* __restrict__ qrep, const u32* __restrict__ params, const u16* __restrict__ x,
           const u16* __restrict__ bias, u16* __restrict__ out, int M, int N, int K, int ldx, int ldo,
           int has_bias) {
  const int tile = blockIdx.x * AR_NT, tiles = gridDim.x * AR_NT, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c = lane & 3;
  pdl_release();
  const int nkb = K >> 6, nst = (nkb + AR_DEPTH - 1) / AR_DEPTH;
  const int kb0 = nst * warp / AR_KSPLIT * AR_DEPTH;

  Gemv gv;
  gv.wq = reinterpret_cast<const char*>(qrep + (tile * AR_KCHUNK * 32 + lane));
  gv.cstride = (u32)tiles * AR_KCHUNK * 512;
  gv.pq = reinterpret_cast<const char*>(params + (tile * 8 + g) * AR_PW);
  gv.pstride = (u32)tiles * 32 * AR_PW;
  gv.c = c;
  gv.kb1 = min(nst * (warp + 1) / AR_KSPLIT * AR_DEPTH, nkb);
  // Before the wait only L2 prefetches of the weight: a previous kernel's writes (post_init's repacking) land in L2,
  // so the loads after the wait see them; a load into registers here might not.
  gv.prefetch_l2(kb0, AR_PF0);
  pdl_wait();
  // Rows past M read row M - 1: an mma output row depends on its own x row only, and it is not stored.
#if AR_XSMEM
  const u32 xbase = x_stage(x, M, K, ldx), xrow = (u32)(K + 8) * 2u;
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) gv.xr[mt] = xbase + (u32)min(8 * mt + g, M - 1) * xrow + 32u * c;
#else
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) gv.xr[mt] = x + (u64)min(8 * mt + g, M - 1) * ldx + 16 * c;
#endif

  float acc[AR_NACC][AR_NT][AR_MT][4];
#pragma unroll
  for (int h = 0; h < AR_NACC; ++h)
#pragma unroll
    for (int t = 0; t < AR_NT; ++t)
#pragma unroll
      for (int mt = 0; mt < AR_MT; ++mt)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[h][t][mt][j] = 0.f;

  // Two step buffers in registers, taking turns: each step's loads are issued before the step
  // before it is computed, into registers nothing reads yet. (A third buffer, loads two steps
  // ahead at 72 registers, was slower: benchmarks/kernel_bench_notes.md.)
#if AR_XSMEM
  // The first step's loads go out before the block waits for x. (Without staging, the buffers stay
  // declared inside the branch: declared outside it, ptxas made the 4096 -> 14336 GEMV 16.2 -> 18.5 us.)
  Step a, b;
  if (kb0 < gv.kb1) gv.load_any(a, kb0);
  asm volatile("cp.async.wait_all;" ::: "memory");
  __syncthreads();
  if (kb0 < gv.kb1) gv.run(acc, a, b, kb0);
#else
  if (kb0 < gv.kb1) {
    Step a, b;
    gv.load_any(a, kb0);
    gv.run(acc, a, b, kb0);
  }
#endif

  // Sum the K slices: D fragment value j of lane l is (column n0 + l/4 + 8*(j/2), row 2*(l%4) + j%2).
  __shared__ float red[AR_KSPLIT][AR_NT * AR_MT * 4][32];
#pragma unroll
  for (int t = 0; t < AR_NT; ++t)
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt)
#pragma unroll
      for (int j = 0; j < 4; ++j) red[warp][(t * AR_MT + mt) * 4 + j][lane] =
#if AR_NACC == 2
            acc[0][t][mt][j] + acc[1][t][mt][j];
#else
            acc[0][t][mt][j];
#endif
  __syncthreads();
  for (int v = threadIdx.x; v < AR_NT * AR_MT * 4 * 32; v += AR_KSPLIT * 32) {
    const int l = v & 31, r = v >> 5, t = r / (AR_MT * 4), mt = (r >> 2) % AR_MT, j = r & 3;
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < AR_KSPLIT; ++w) s += red[w][r][l];
    const int n = (tile + t) * 16 + (l >> 2) + 8 * (j >> 1);
    const int m = 8 * mt + 2 * (l & 3) + (j & 1);
    if (m < M && n < N) {
      if (has_bias) s += act2f(bias[n]);
      out[(u64)m * ldo + n] = f2act(s);
    }
  }
}

// ---- dequantization (large batches: the weight once, then cuBLAS) -------------------------------

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

// W (N, K) in the activation dtype, the torch backend's weight bit for bit (for cuBLAS on large batches).
// Grid: N/16 blocks of 8 warps, each warp a K slice of the block's 16 columns.
extern "C" __global__ void __launch_bounds__(256)
ar_w4_dequant(const u32x4* __restrict__ qrep, const u16* __restrict__ scales, const u16* __restrict__ zeros,
              u32x4* __restrict__ w, int N, int Np, int K) {
  const int tile = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c = lane & 3;
  const int nkb = K >> 6;
  const int kb0 = nkb * warp / 8, kb1 = nkb * (warp + 1) / 8;
  const char* wq = reinterpret_cast<const char*>(qrep + (tile * AR_KCHUNK * 32 + lane));
  const u32 cstride = (u32)(Np >> 4) * AR_KCHUNK * 512;
  const int n_lo = tile * 16 + g;
  // Each warp's 16 rows x 64 k pass through its own 2 KB of shared memory (16-byte chunks, XOR
  // swizzled: no bank conflicts), so that each store instruction writes 4 whole 128-byte rows
  // (storing each lane's own chunks wrote half sectors: 78 us instead of 59 on an H100).
  __shared__ u32x4 stage[8][16 * 8];
  u32x4* st = stage[warp];
  const int r_out = lane >> 3, j_out = lane & 7;
  u32x4* w_out = w + (u64)(tile * 16 + r_out) * (K >> 3) + j_out;
  Col lo = {0u, 0u, 0u}, hi = {0u, 0u, 0u};
  int cur = -1;
#pragma unroll 4
  for (int k = kb0; k < kb1; ++k) {
    const u32x4 q = ldg_stream(at(wq, (u32)k / AR_KCHUNK, cstride) + (u32)k % AR_KCHUNK * 512);
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
    // row g (column n_lo) and row g + 8 (n_lo + 8): k = 16 c + 0..7 in chunk 2c, 8..15 in 2c + 1
    __syncwarp();
    st[g * 8 + ((2 * c) ^ g)] = u32x4{a0[0], a0[2], a1[0], a1[2]};
    st[g * 8 + ((2 * c + 1) ^ g)] = u32x4{a2[0], a2[2], a3[0], a3[2]};
    st[(g + 8) * 8 + ((2 * c) ^ g)] = u32x4{a0[1], a0[3], a1[1], a1[3]};
    st[(g + 8) * 8 + ((2 * c + 1) ^ g)] = u32x4{a2[1], a2[3], a3[1], a3[3]};
    __syncwarp();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = 4 * i + r_out;
      if (tile * 16 + r < N) w_out[(u64)(4 * i) * (K >> 3) + 8 * k] = st[r * 8 + (j_out ^ (r & 7))];
    }
  }
}

// ---- GEMM (mid-size batches: up to a few hundred rows) ------------------------------------------

// out (M, N) = x (M, K) @ W (K, N) [+ bias] for the layout with P = 1 (AR_KCHUNK 1) and N a multiple of 128.
// A block of 8 / AR_GTW warps takes R = 8 * AR_GMT rows x 128 columns (8 tiles) over one of `ksplit` equal K
// ranges; 64-k blocks of x (R x 64) and of the weight (8 tiles x 512 bytes) pass through an AR_GSTAGES-deep ring in
// dynamic shared memory (AR_GSTAGES * AR_GSLOT bytes), filled by cp.async. Warp w owns tiles AR_GTW w .. + AR_GTW - 1
// of the block for all R rows: the GEMV's fragments with AR_GMT n8 tiles of rows (the dequantized words are the A
// operand as they come, x's rows the B operand, read from the ring: lane (g, c) takes x[8 mt + g][64 kb + 16 c ..]).
// Each weight word is dequantized once per block, so taller blocks spend less on it per row.
// Grid: (N / 128) * ksplit * ceil(M / R) blocks, the row blocks of one weight slice adjacent (they share it in L2).
// ksplit 1 writes `out`; more write fp32 partial sums to ws[split][M][N] for `ar_w4_gemm_reduce`.
#ifndef AR_GSTAGES
#define AR_GSTAGES 3   // ring slots (3 and 4 measured the same on an H100; 3 stays under 48 KB)
#endif
#ifndef AR_GMINB
#define AR_GMINB 3     // GEMM blocks per SM the registers must allow
#endif
#ifndef AR_GTW
#define AR_GTW 2       // 16-column tiles per GEMM warp (1 or 2): 8 / AR_GTW warps per block
#endif
#ifndef AR_GMT
#define AR_GMT 8       // n8 tiles of rows per GEMM block (8 or 16: 64 or 128 rows)
#endif
#define AR_GTHREADS (256 / AR_GTW)
#define AR_GROWS (8 * AR_GMT)
#define AR_GXROW 72                                // x row pitch in the ring, elements: 144 bytes keep
                                                   // 8 rows' 16-byte reads on distinct banks
#define AR_GSLOT (AR_GROWS * AR_GXROW * 2 + 8 * 512)  // bytes per ring slot: x, then the weight

__device__ __forceinline__ u32 smem_u32(const void* p) {
  u32 a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
__device__ __forceinline__ void cp16(u32 dst, const void* src, bool read = true) {  // !read: 16 zero bytes
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(read ? 16 : 0));
}
__device__ __forceinline__ u32x4 lds(u32 a) {
  u32x4 v;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
  return v;
}

// Copies 64-k block kb of x's AR_GROWS rows (rows past M are zeros: their outputs are not stored) and of the
// block's 8 weight tiles (256 16-byte chunks) into ring slot `slot` (shared address).
__device__ __forceinline__ void gemm_fill(u32 slot, const u16* x, const u32x4* wq, int kb, int m0, int M, int ldx,
                                          int tiles, int tile0) {
#pragma unroll
  for (int i = 0; i < AR_GROWS * 8 / AR_GTHREADS; ++i) {
    const int v = threadIdx.x + AR_GTHREADS * i, r = v >> 3, ch = v & 7;
    cp16(slot + 2u * (u32)(r * AR_GXROW + ch * 8), x + (u64)min(m0 + r, M - 1) * ldx + kb * 64 + ch * 8,
         m0 + r < M);
  }
#pragma unroll
  for (int i = 0; i < 256 / AR_GTHREADS; ++i) {
    const int v = threadIdx.x + AR_GTHREADS * i;
    cp16(slot + AR_GROWS * AR_GXROW * 2 + 16u * v, wq + ((u64)kb * tiles + tile0) * 32 + v);
  }
}

extern "C" __global__ void __launch_bounds__(AR_GTHREADS, AR_GMINB)
ar_w4_gemm(const u32x4* __restrict__ qrep, const u32* __restrict__ params, const u16* __restrict__ x,
           const u16* __restrict__ bias, u16* __restrict__ out, float* __restrict__ ws, int M, int N, int K,
           int ldx, int ldo, int has_bias, int ksplit) {
  extern __shared__ __align__(16) unsigned char gring[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int mblocks = (M + AR_GROWS - 1) / AR_GROWS, tiles = N >> 4;
  const int m0 = (blockIdx.x % mblocks) * AR_GROWS, split = blockIdx.x / mblocks % ksplit;
  const int tile0 = blockIdx.x / mblocks / ksplit * 8, tile = tile0 + AR_GTW * warp;  // the warp's first tile
  const int nkb = K >> 6, kb0 = nkb * split / ksplit, kb1 = nkb * (split + 1) / ksplit, n_kb = kb1 - kb0;
  const u32 ring = smem_u32(gring);
  const u32* par = params + (tile * 8 + g) * AR_PW;
  const int pstride = tiles * 8 * AR_PW;  // words per group

  float acc[AR_GTW][AR_GMT][4];  // tile, n8 tile of rows, D fragment
#pragma unroll
  for (int t = 0; t < AR_GTW; ++t)
#pragma unroll
    for (int mt = 0; mt < AR_GMT; ++mt)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[t][mt][j] = 0.f;

#pragma unroll
  for (int s = 0; s < AR_GSTAGES - 1; ++s) {
    if (s < n_kb) gemm_fill(ring + s * AR_GSLOT, x, qrep, kb0 + s, m0, M, ldx, tiles, tile0);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  Par p[AR_GTW];  // the next block's constants, loaded a block ahead
#pragma unroll
  for (int t = 0; t < AR_GTW; ++t) p[t] = load_par(par + group_of(kb0, c) * pstride + t * 8 * AR_PW);
  for (int i = 0; i < n_kb; ++i) {
    asm volatile("cp.async.wait_group %0;" :: "n"(AR_GSTAGES - 2) : "memory");
    __syncthreads();  // slot i is in for every thread, and slot i - 1 is free to refill
    if (i + AR_GSTAGES - 1 < n_kb)
      gemm_fill(ring + (i + AR_GSTAGES - 1) % AR_GSTAGES * AR_GSLOT, x, qrep, kb0 + i + AR_GSTAGES - 1, m0, M, ldx,
                tiles, tile0);
    asm volatile("cp.async.commit_group;" ::: "memory");
    const u32 slot = ring + i % AR_GSTAGES * AR_GSLOT;
    const int kb = kb0 + i, next = min(kb + 1, kb1 - 1);

    u32 a[AR_GTW][4][4];  // tile, word kk, the word's A fragment
#pragma unroll
    for (int t = 0; t < AR_GTW; ++t) {
      const u32x4 q = lds(slot + AR_GROWS * AR_GXROW * 2 + 16u * (u32)((AR_GTW * warp + t) * 32 + lane));
      const Col lo = col_of<0>(p[t]), hi = col_of<1>(p[t]);
      p[t] = load_par(par + group_of(next, c) * pstride + t * 8 * AR_PW);
      dequant(q.x, lo, hi, a[t][0]);
      dequant(q.y, lo, hi, a[t][1]);
      dequant(q.z, lo, hi, a[t][2]);
      dequant(q.w, lo, hi, a[t][3]);
    }
#pragma unroll
    for (int mt = 0; mt < AR_GMT; ++mt) {
      const u32 xa = slot + 2u * (u32)((8 * mt + g) * AR_GXROW + 16 * c);
      const u32x4 xq[2] = {lds(xa), lds(xa + 16)};  // row 8 mt + g: k 16 c + 0..7, + 8..15
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const u32x4& v = xq[kk >> 1];
#pragma unroll
        for (int t = 0; t < AR_GTW; ++t) mma(acc[t][mt], a[t][kk], (kk & 1) ? v.z : v.x, (kk & 1) ? v.w : v.y);
      }
    }
  }

  // D fragment value j of lane (g, c): column 16 t + g + 8 (j >> 1) of the warp's tiles, row 8 mt + 2 c + (j & 1).
#pragma unroll
  for (int t = 0; t < AR_GTW; ++t)
#pragma unroll
    for (int j2 = 0; j2 < 2; ++j2) {
      const int n = (tile + t) * 16 + g + 8 * j2;
      const float b = has_bias && ksplit == 1 ? act2f(bias[n]) : 0.f;
#pragma unroll
      for (int mt = 0; mt < AR_GMT; ++mt)
#pragma unroll
        for (int j1 = 0; j1 < 2; ++j1) {
          const int m = m0 + 8 * mt + 2 * c + j1;
          if (m >= M) continue;
          const float v = acc[t][mt][2 * j2 + j1];
          if (ksplit == 1) out[(u64)m * ldo + n] = f2act(v + b);
          else ws[((u64)split * M + m) * N + n] = v;
        }
    }
}

// out = the sum of ar_w4_gemm's ksplit fp32 partials (in split order: deterministic) [+ bias], cast. 2 columns
// per thread.
extern "C" __global__ void __launch_bounds__(256)
ar_w4_gemm_reduce(const float* __restrict__ ws, const u16* __restrict__ bias, u16* __restrict__ out, int M, int N,
                  int ldo, int has_bias, int ksplit) {
  const int v = blockIdx.x * 256 + threadIdx.x, half = N >> 1;
  if (v >= M * half) return;
  const int m = v / half, n = 2 * (v - m * half);
  float s0 = 0.f, s1 = 0.f;
  for (int i = 0; i < ksplit; ++i) {
    const float2 p = *reinterpret_cast<const float2*>(ws + ((u64)i * M + m) * N + n);
    s0 += p.x;
    s1 += p.y;
  }
  if (has_bias) s0 += act2f(bias[n]), s1 += act2f(bias[n + 1]);
  *reinterpret_cast<u32*>(out + (u64)m * ldo + n) = (u32)f2act(s0) | ((u32)f2act(s1) << 16);
}
