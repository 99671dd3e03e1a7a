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
#define AR_NT 1        // 16-column tiles per warp (some blocks may take AR_NT - 1: the kernel's nfull)
#endif
#ifndef AR_NACC
#define AR_NACC 2      // accumulator sets (blocks alternate between them)
#endif
#ifndef AR_XSMEM
#define AR_XSMEM 0     // x staged in shared memory (dynamic, rows * (K + 8) * 2 bytes): 1 by the block, 2 by each warp its slice
#endif
#ifndef AR_ILV
#define AR_ILV 0       // experiment: warp w takes steps w, w + AR_KSPLIT, ... (the block's warps read adjacent k-blocks)
#endif
#define AR_KSTEP (AR_ILV ? AR_KSPLIT * AR_DEPTH : AR_DEPTH)
#ifndef AR_TRACE
#define AR_TRACE 0     // benchmarks only: per warp, %globaltimer at start, loop end and end into `bias` (has_bias 0); 2: and %smid
#endif
#ifndef AR_READONLY
#define AR_READONLY 0  // benchmarks only: the same loads, no dequantization or mma (wrong results)
#endif
#ifndef AR_XBLK
#define AR_XBLK 0      // experiment (with AR_READONLY only): blocks of one warp, AR_KSPLIT blocks per group
#endif
#if AR_XBLK && !AR_READONLY
#error "AR_XBLK has no cross-block reduction: timing experiments with AR_READONLY only"
#endif
#ifndef AR_KS1
#define AR_KS1 AR_KSPLIT  // with AR_PAIR: warps of the short group (the full group has AR_KSPLIT)
#endif
#define AR_RED_WARPS (AR_XBLK ? 1 : AR_KS1 > AR_KSPLIT ? AR_KS1 : AR_KSPLIT)
#ifndef AR_RING
#define AR_RING 0      // > 1: the weights and constants go through a ring of AR_RING one-block steps in shared memory
#endif
#if AR_RING && (AR_DEPTH != 1 || AR_KCHUNK != 1 || AR_XSMEM || AR_PAIR || AR_XBLK)
#error "AR_RING runs one-block steps on the kchunk-1 layout, x from global memory, one group per block"
#endif
#ifndef AR_KACC
#define AR_KACC 0      // experiment: accumulator set by the k16 slice's parity (kk & 1) instead of by block
#endif
#ifndef AR_BORDER
#define AR_BORDER 0    // experiment: tiles outer, k16 slices inner in a block's mma loop
#endif
#ifndef AR_UNROLL4
#define AR_UNROLL4 0   // experiment: the K loop unrolled over 4 steps instead of 2
#endif
#ifndef AR_BULK
#define AR_BULK 0      // > 0: each warp's weights and constants arrive by TMA bulk copies into AR_BULK stages
#endif
#if AR_BULK && (AR_DEPTH != 1 || AR_KCHUNK != 1 || AR_XSMEM || AR_PAIR || AR_XBLK || AR_RING || AR_GROUP % 64)
#error "AR_BULK: one-block steps on the kchunk-1 layout, x from global memory, groups of whole 64-k blocks"
#endif
#ifndef AR_RB3
#define AR_RB3 0       // 1: three one-block weight buffers in registers (loads two steps ahead), constants once per group
#endif
#if AR_RB3 && (AR_DEPTH != 1 || AR_KCHUNK != 1 || AR_XSMEM || AR_PAIR || AR_XBLK || AR_RING || AR_BULK || AR_GROUP % 128)
#error "AR_RB3: one-block steps on the kchunk-1 layout, x from global memory, groups of whole 128-k pairs"
#endif
#ifndef AR_NOPAR
#define AR_NOPAR 0     // timing experiment (wrong results): no constant loads, constants from the lane index
#endif
#ifndef AR_NOX
#define AR_NOX 0       // timing experiment (wrong results): no x loads, x from the lane index
#endif
#ifndef AR_PAIR
#define AR_PAIR 0      // 1: a block is two GEMV groups of AR_KSPLIT warps (one full, one short: see the kernel)
#endif
#ifndef AR_MIXALT
#define AR_MIXALT 0    // block order of the nfull full blocks: first (0) or alternating with short ones (1)
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

// One step: AR_DEPTH consecutive 64-k blocks of a lane's weight for NT tiles and their constants, in registers.
template <int NT>
struct Step {
  u32x4 w[NT][AR_DEPTH];
  Par p[NT][AR_NP];
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
  template <int NT, bool FULL>
  __device__ __forceinline__ void load(Step<NT>& s, int kb) const {
#pragma unroll
    for (int h = 0; h < AR_DEPTH / AR_KCHUNK; ++h) {
      const char* w = at(wq, (u32)kb / AR_KCHUNK + h, cstride);
#pragma unroll
      for (int i = 0; i < AR_KCHUNK; ++i)
        if (FULL || kb + h * AR_KCHUNK + i < kb1)
#pragma unroll
          for (int t = 0; t < NT; ++t) s.w[t][h * AR_KCHUNK + i] = ldg_stream(w + (t * AR_KCHUNK + i) * 512);
    }
#pragma unroll
    for (int j = 0; j < AR_NP; ++j)
      if (FULL || kb + j * AR_PB < kb1) {
        const char* pp = at(pq, group_of(kb + j * AR_PB, c), pstride);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
#if AR_NOPAR
          (void)pp;
#pragma unroll
          for (int q = 0; q < AR_PW; ++q) s.p[t][j].w[q] = 0x3C003C00u ^ (u32)(c + q + t + kb);
#else
          s.p[t][j] = load_par(pp + t * 32 * AR_PW);
#endif
        }
      }
  }

  // Multiplies step kb into the accumulator sets (blocks alternate between them).
  template <int NT, bool FULL>
  __device__ __forceinline__ void compute(float (&acc)[AR_NACC][NT][AR_MT][4], const Step<NT>& s, int kb) const {
    XPtr xs[AR_MT];
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) xs[mt] = xadd(xr[mt], kb * 64);
#pragma unroll
    for (int j = 0; j < AR_NP; ++j) {
      if (!FULL && kb + j * AR_PB >= kb1) break;
      Col lo[NT], hi[NT];
#pragma unroll
      for (int t = 0; t < NT; ++t) lo[t] = col_of<0>(s.p[t][j]), hi[t] = col_of<1>(s.p[t][j]);
#pragma unroll
      for (int ii = 0; ii < AR_PB; ++ii) {
        const int i = j * AR_PB + ii;
        if (FULL || kb + i < kb1) block<NT>(acc, s, i, lo, hi, xs, i * 64);
      }
    }
  }

  // One 64-k block of every tile: the lane's four words per tile dequantized and multiplied with x's
  // rows (at xs + off), the x loads shared by the tiles.
  template <int NT>
  __device__ __forceinline__ void block(float (&accs)[AR_NACC][NT][AR_MT][4], const Step<NT>& s, int i, const Col (&lo)[NT],
                                        const Col (&hi)[NT], const XPtr (&xs)[AR_MT], int off) const {
    u32x4 xv[AR_MT][2];
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) {
#if AR_NOX
      const u32 v = 0x3F803F80u ^ (u32)(off + c);
      xv[mt][0] = u32x4{v, v ^ 1u, v ^ 2u, v ^ 3u};
      xv[mt][1] = u32x4{v ^ 4u, v ^ 5u, v ^ 6u, v ^ 7u};
      (void)xs;
#else
      xv[mt][0] = load_x(xadd(xs[mt], off));
      xv[mt][1] = load_x(xadd(xs[mt], off + 8));
#endif
    }
#if AR_READONLY
    float (&acc)[NT][AR_MT][4] = accs[0];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const u32x4& q = s.w[t][i];
      acc[t][0][0] = __uint_as_float(__float_as_uint(acc[t][0][0]) ^ q.x ^ q.y ^ q.z ^ q.w ^ lo[t].shi ^ hi[t].slo ^
                                     xv[0][0].x ^ xv[0][1].w);
    }
    return;
#endif
#pragma unroll
    for (int o = 0; o < (AR_BORDER ? NT : 4); ++o) {
#pragma unroll
      for (int n = 0; n < (AR_BORDER ? 4 : NT); ++n) {
        const int kk = AR_BORDER ? n : o, t = AR_BORDER ? o : n;
        const u32x4& q = s.w[t][i];
        const u32 qw = kk == 0 ? q.x : kk == 1 ? q.y : kk == 2 ? q.z : q.w;
        u32 a[4];
        dequant(qw, lo[t], hi[t], a);
        float (&acc)[NT][AR_MT][4] = accs[AR_KACC ? (kk & 1) % AR_NACC : i % AR_NACC];
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
  template <int NT>
  __device__ __forceinline__ bool step(float (&acc)[AR_NACC][NT][AR_MT][4], const Step<NT>& cur, Step<NT>& nxt, int kb) {
    // The base addresses pass through an empty asm each step: ptxas then keeps them in registers
    // instead of recomputing them from the thread index and the arguments (~20 instructions a step).
    asm volatile("" : "+l"(wq), "+l"(pq));
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) AR_XPIN(xr[mt]);
    if (kb + AR_DEPTH > kb1) {  // the last step, partial
      compute<NT, false>(acc, cur, kb);
      return false;
    }
    load_any<NT>(nxt, kb + AR_KSTEP);
    compute<NT, true>(acc, cur, kb);
    return kb + AR_KSTEP < kb1;
  }

  // Loads step kb where it is (partly) in the warp's slice.
  template <int NT>
  __device__ __forceinline__ void load_any(Step<NT>& s, int kb) const {
    if (kb + AR_DEPTH <= kb1) load<NT, true>(s, kb);
    else if (kb < kb1) load<NT, false>(s, kb);
  }
};

#if AR_PAIR && AR_NT < 2
#error "AR_PAIR pairs a group of AR_NT tiles with one of AR_NT - 1"
#endif
#if AR_XSMEM == 1 && AR_PAIR
#error "AR_XSMEM 1 stages x by the whole block: not with AR_PAIR (use AR_XSMEM 2)"
#endif
#if AR_XSMEM
// x's rows go to shared memory (16-byte async copies, rows K + 8 elements apart so that 8 rows fall on
// different banks), where the warps then read it instead of from L1 / L2: the whole rows by the whole
// block (AR_XSMEM 1) or each warp's own K slice, chunks [ch0, ch1) of each row, by its own lanes
// (AR_XSMEM 2: no block barrier). `x_wait` waits for them. Returns the shared address of row 0.
__device__ __forceinline__ u32 x_stage(const u16* __restrict__ x, int M, int K, int ldx, int ch0, int ch1) {
  extern __shared__ __align__(16) u16 xsm[];
  u32 base;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(base) : "l"(xsm));
  const int rows = min(M, 8 * AR_MT), per_row = ch1 - ch0;
  const u32 row_bytes = (u32)(K + 8) * 2u;
  const int t0 = AR_XSMEM == 1 ? threadIdx.x : threadIdx.x & 31, nt = AR_XSMEM == 1 ? AR_KSPLIT * 32 : 32;
  for (int v = t0; v < rows * per_row; v += nt) {
    const int r = v / per_row, ch = ch0 + v - r * per_row;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(base + r * row_bytes + ch * 16u),
                 "l"(x + (u64)r * ldx + ch * 8));
  }
  return base;
}

__device__ __forceinline__ void x_wait() {
  asm volatile("cp.async.wait_all;" ::: "memory");
#if AR_XSMEM == 1
  __syncthreads();
#else
  __syncwarp();
#endif
}
#endif

#if AR_RING
// The ring: each lane copies its own 16-byte weight chunk and AR_PW constant words per tile of a step into
// its own slots (cp.async) AR_RING - 1 steps ahead, and reads back only what it copied (no barrier). Per warp
// and stage: NT x 32 chunks, then NT x 32 constant records. `base` is the lane's first chunk.
template <int NT>
struct Ring {
  static constexpr u32 STAGE = NT * 32 * (16 + 4 * AR_PW);  // bytes per warp and stage
  u32 base;

  __device__ __forceinline__ u32 chunk(int slot, int t) const { return base + (u32)(slot * STAGE + t * 512); }
  __device__ __forceinline__ u32 par(int slot, int t) const {
    return base - 16u * (threadIdx.x & 31) + (u32)(slot * STAGE + NT * 512 + (t * 32 + (threadIdx.x & 31)) * 4 * AR_PW);
  }

  // Copies step kb (if the warp has it) into `slot`; always one commit group, so that waits count steps.
  __device__ __forceinline__ void issue(const Gemv& gv, int kb, int slot) const {
    if (kb < gv.kb1) {
      const char* w = at(gv.wq, (u32)kb, gv.cstride);
#pragma unroll
      for (int t = 0; t < NT; ++t)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(chunk(slot, t)), "l"(w + t * 512));
      const char* pp = at(gv.pq, group_of(kb, gv.c), gv.pstride);
#pragma unroll
      for (int t = 0; t < NT; ++t)
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" :: "r"(par(slot, t)), "l"(pp + t * 32 * AR_PW),
                     "n"(4 * AR_PW));
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  }

  __device__ __forceinline__ void read(Step<NT>& s, int slot) const {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      u32x4& v = s.w[t][0];
      asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                   : "r"(chunk(slot, t)));
      u32* q = s.p[t][0].w;
#if AR_PW == 4
      asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(q[0]), "=r"(q[1]), "=r"(q[2]), "=r"(q[3]) : "r"(par(slot, t)));
#elif AR_PW == 2
      asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];" : "=r"(q[0]), "=r"(q[1]) : "r"(par(slot, t)));
#else
      asm volatile("ld.shared.u32 %0, [%1];" : "=r"(q[0]) : "r"(par(slot, t)));
#endif
    }
  }
};

// The K loop through the ring: step kb + AR_RING - 1 is copied while step kb is computed.
template <int NT>
__device__ __forceinline__ void ring_loop(Gemv& gv, float (&acc)[AR_NACC][NT][AR_MT][4], int kb0, int warp) {
  extern __shared__ __align__(16) unsigned char ring_smem[];
  Ring<NT> r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r.base) : "l"(ring_smem));
  r.base += (u32)warp * AR_RING * Ring<NT>::STAGE + 16u * (threadIdx.x & 31);
#pragma unroll
  for (int i = 0; i < AR_RING - 1; ++i) r.issue(gv, kb0 + i, i);
  int slot = 0;
  for (int kb = kb0; kb < gv.kb1; ++kb) {
    asm volatile("" : "+l"(gv.wq), "+l"(gv.pq));
    r.issue(gv, kb + AR_RING - 1, slot == 0 ? AR_RING - 1 : slot - 1);
    asm volatile("cp.async.wait_group %0;" :: "n"(AR_RING - 1) : "memory");
    Step<NT> s;
    r.read(s, slot);
    gv.compute<NT, true>(acc, s, kb);
    slot = slot == AR_RING - 1 ? 0 : slot + 1;
  }
}
#endif

#if AR_BULK
// Bulk-copy pipeline: per warp AR_BULK stages of [NT x 512 bytes of weights][NT x 8 x AR_PW constant words]
// (both contiguous in global memory for NT adjacent tiles), each with an mbarrier. Lane 0 issues a stage's two
// TMA copies; every lane waits on the stage's barrier phase, reads its part, and after the warp has used it
// (and a proxy fence) lane 0 refills the stage AR_BULK steps ahead.
template <int NT>
__device__ __forceinline__ void bulk_loop(Gemv& gv, float (&acc)[AR_NACC][NT][AR_MT][4], int kb0, int warp) {
  constexpr u32 WB = NT * 512, PB = NT * 8 * 4 * AR_PW, STAGE = WB + PB;
  extern __shared__ __align__(128) unsigned char bulk_smem[];
  u32 base;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(base) : "l"(bulk_smem));
  const int lane = threadIdx.x & 31, g = lane >> 2;
  const u32 st0 = base + (u32)warp * AR_BULK * STAGE;
  const u32 bar0 = base + AR_KSPLIT * AR_BULK * STAGE + (u32)warp * AR_BULK * 8;
  const char* wtile = gv.wq - 16 * lane;          // the warp's first tile, k-block 0
  const char* ptile = gv.pq - 4 * AR_PW * g;      // its first tile's constants, group 0
  if (lane == 0) {
#pragma unroll
    for (int s = 0; s < AR_BULK; ++s) asm volatile("mbarrier.init.shared.b64 [%0], 1;" :: "r"(bar0 + 8 * s) : "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncwarp();
  auto issue = [&](int kb, int s) {
    if (lane == 0 && kb < gv.kb1) {
      const u32 bar = bar0 + 8 * s, dst = st0 + (u32)s * STAGE;
      asm volatile("mbarrier.arrive.expect_tx.shared.b64 _, [%0], %1;" :: "r"(bar), "n"(STAGE) : "memory");
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                   :: "r"(dst), "l"(at(wtile, (u32)kb, gv.cstride)), "n"(WB), "r"(bar) : "memory");
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                   :: "r"(dst + WB), "l"(at(ptile, (u32)(kb * 64 / AR_GROUP), gv.pstride)), "n"(PB), "r"(bar)
                   : "memory");
    }
  };
#pragma unroll
  for (int i = 0; i < AR_BULK; ++i) issue(kb0 + i, i);
  int s = 0;
  u32 phase = 0;
  for (int kb = kb0; kb < gv.kb1; ++kb) {
    const u32 bar = bar0 + 8 * s, st = st0 + (u32)s * STAGE;
    u32 done = 0;
    while (!done)
      asm volatile("{ .reg .pred P; mbarrier.try_wait.parity.shared.b64 P, [%1], %2; selp.u32 %0, 1, 0, P; }"
                   : "=r"(done) : "r"(bar), "r"(phase) : "memory");
    Step<NT> stp;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      u32x4& v = stp.w[t][0];
      asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                   : "r"(st + t * 512 + 16 * lane));
      u32* q = stp.p[t][0].w;
#if AR_PW == 4
      asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(q[0]), "=r"(q[1]), "=r"(q[2]), "=r"(q[3])
                   : "r"(st + WB + (t * 8 + g) * 16));
#elif AR_PW == 2
      asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];" : "=r"(q[0]), "=r"(q[1]) : "r"(st + WB + (t * 8 + g) * 8));
#else
      asm volatile("ld.shared.u32 %0, [%1];" : "=r"(q[0]) : "r"(st + WB + (t * 8 + g) * 4));
#endif
    }
    gv.compute<NT, true>(acc, stp, kb);
    __syncwarp();
    if (lane == 0) asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    issue(kb + AR_BULK, s);
    if (++s == AR_BULK) s = 0, phase ^= 1;
  }
}
#endif

#if AR_RB3
// Three weight buffers taking turns (the loads of step k + 2 go out before step k is computed) and one set of
// constants: a group spans an even number of one-block steps and warps start on even steps, so the constants
// are loaded two steps ahead on even steps only and turned into column pairs (kept for both steps) before the
// next group's load reuses their registers.
template <int NT>
__device__ __forceinline__ void rb3_loadw(const Gemv& gv, Step<NT>& s, int kb) {
  if (kb < gv.kb1) {
    const char* w = at(gv.wq, (u32)kb, gv.cstride);
#pragma unroll
    for (int t = 0; t < NT; ++t) s.w[t][0] = ldg_stream(w + t * 512);
  }
}

template <int NT>
__device__ __forceinline__ void rb3_loadp(const Gemv& gv, Par (&p)[NT], int kb) {
  if (kb < gv.kb1) {
    const char* pp = at(gv.pq, (u32)(kb * 64 / AR_GROUP), gv.pstride);
#pragma unroll
    for (int t = 0; t < NT; ++t) p[t] = load_par(pp + t * 32 * AR_PW);
  }
}

// One step k from `cur` (its loads issued two steps ago), first issuing step k + 2 into `nxt`; even steps first
// take their column constants from `p` and refill it for step k + 2. False where k is past the warp's slice.
template <int NT, bool EVEN>
__device__ __forceinline__ bool rb3_step(Gemv& gv, float (&acc)[AR_NACC][NT][AR_MT][4], const Step<NT>& cur,
                                         Step<NT>& nxt, Par (&p)[NT], Col (&lo)[NT], Col (&hi)[NT], int k) {
  if (k >= gv.kb1) return false;
  asm volatile("" : "+l"(gv.wq), "+l"(gv.pq));
  rb3_loadw<NT>(gv, nxt, k + 2);
  if (EVEN) {
#pragma unroll
    for (int t = 0; t < NT; ++t) lo[t] = col_of<0>(p[t]), hi[t] = col_of<1>(p[t]);
    rb3_loadp<NT>(gv, p, k + 2);
  }
  XPtr xs[AR_MT];
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) xs[mt] = xadd(gv.xr[mt], k * 64);
  gv.block<NT>(acc, cur, 0, lo, hi, xs, 0);
  return true;
}

template <int NT>
__device__ __forceinline__ void rb3_loop(Gemv& gv, float (&acc)[AR_NACC][NT][AR_MT][4], int kb0) {
  Step<NT> a, b, c;
  Par p[NT];
  Col lo[NT], hi[NT];
  rb3_loadw<NT>(gv, a, kb0);
  rb3_loadw<NT>(gv, b, kb0 + 1);
  rb3_loadp<NT>(gv, p, kb0);
  for (int k = kb0;; k += 6) {
    if (!rb3_step<NT, true>(gv, acc, a, c, p, lo, hi, k)) break;
    if (!rb3_step<NT, false>(gv, acc, b, a, p, lo, hi, k + 1)) break;
    if (!rb3_step<NT, true>(gv, acc, c, b, p, lo, hi, k + 2)) break;
    if (!rb3_step<NT, false>(gv, acc, a, c, p, lo, hi, k + 3)) break;
    if (!rb3_step<NT, true>(gv, acc, b, a, p, lo, hi, k + 4)) break;
    if (!rb3_step<NT, false>(gv, acc, c, b, p, lo, hi, k + 5)) break;
  }
}
#endif

#ifndef AR_DYN
#define AR_DYN 0       // experiment: the block's warps take one-block steps from a shared counter (the first two: w, w + AR_KSPLIT)
#endif
#if AR_DYN
#if AR_DEPTH != 1 || AR_KCHUNK != 1 || AR_XSMEM == 2 || AR_PAIR || AR_XBLK
#error "AR_DYN: one-block steps on the kchunk-1 layout, x from global memory or staged by the block, no pairs"
#endif
__device__ __forceinline__ int dyn_grab(int* ctr) {
  int v = 0;
  if ((threadIdx.x & 31) == 0) v = atomicAdd(ctr, 1);
  return __shfl_sync(0xffffffffu, v, 0);
}

template <int NT>
__device__ __forceinline__ void dyn_loop(Gemv& gv, float (&acc)[AR_NACC][NT][AR_MT][4], int warp, int nkb) {
  __shared__ int ctr;
  if (threadIdx.x == 0) ctr = 2 * AR_KSPLIT;
  __syncthreads();
  Step<NT> a, b;
  int kb = warp, nx = warp + AR_KSPLIT;
  if (kb < nkb) gv.load<NT, true>(a, kb);
#if AR_XSMEM
  x_wait();
#endif
  int nn = nx < nkb ? dyn_grab(&ctr) : nkb;
  while (kb < nkb) {
    asm volatile("" : "+l"(gv.wq), "+l"(gv.pq));
    if (nx < nkb) gv.load<NT, true>(b, nx);
    gv.compute<NT, true>(acc, a, kb);
    kb = nx, nx = nn;
    nn = nx < nkb ? dyn_grab(&ctr) : nkb;
    if (kb >= nkb) break;
    asm volatile("" : "+l"(gv.wq), "+l"(gv.pq));
    if (nx < nkb) gv.load<NT, true>(a, nx);
    gv.compute<NT, true>(acc, b, kb);
    kb = nx, nx = nn;
    nn = nx < nkb ? dyn_grab(&ctr) : nkb;
  }
}
#endif

#ifndef AR_FIX
#define AR_FIX 0       // experiment: every warp has exactly AR_FIX one-block steps, fully unrolled, loads AR_AHEAD steps ahead
#endif
#ifndef AR_AHEAD
#define AR_AHEAD 2
#endif
#if AR_FIX
template <int NT>
__device__ __forceinline__ void fix_loop(Gemv& gv, float (&acc)[AR_NACC][NT][AR_MT][4], int kb0) {
  u32x4 w[AR_FIX][NT];
  Par p[(AR_FIX + 1) / 2][NT];
#pragma unroll
  for (int i = 0; i < AR_FIX + AR_AHEAD; ++i) {
    if (i < AR_FIX) {
      const char* a = at(gv.wq, (u32)(kb0 + i), gv.cstride);
#pragma unroll
      for (int t = 0; t < NT; ++t) w[i][t] = ldg_stream(a + t * 512);
      if (i % 2 == 0) {
        const char* pp = at(gv.pq, (u32)((kb0 + i) * 64 / AR_GROUP), gv.pstride);
#pragma unroll
        for (int t = 0; t < NT; ++t) p[i / 2][t] = load_par(pp + t * 32 * AR_PW);
      }
    }
    const int j = i - AR_AHEAD;
#if AR_XSMEM
    if (j == 0) x_wait();
#endif
    if (j >= 0) {
      Step<NT> s;
      Col lo[NT], hi[NT];
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        s.w[t][0] = w[j][t];
        lo[t] = col_of<0>(p[j / 2][t]), hi[t] = col_of<1>(p[j / 2][t]);
      }
      XPtr xs[AR_MT];
#pragma unroll
      for (int mt = 0; mt < AR_MT; ++mt) xs[mt] = xadd(gv.xr[mt], (kb0 + j) * 64);
      gv.block<NT>(acc, s, 0, lo, hi, xs, 0);
    }
  }
}
#endif

// Barrier of one group of ks warps (the whole block unless AR_PAIR).
__device__ __forceinline__ void group_sync(int group, int ks) {
#if AR_PAIR
  asm volatile("bar.sync %0, %1;" :: "r"(1 + group), "r"(ks * 32) : "memory");
#else
  __syncthreads();
#endif
}

// The GEMV of one block once its Gemv is set up: NT tiles from `tile` on, the K slices summed over the
// block's warps in `red` (shared), stored as out's columns.
template <int NT>
__device__ __forceinline__ void gemv_block(Gemv& gv, int kb0, int tile, int warp, int group, int ks, float* red,
                                           const u16* __restrict__ bias, u16* __restrict__ out, int M, int N, int ldo,
                                           int has_bias) {
  const int lane = threadIdx.x & 31, tid = warp * 32 + lane;
#if AR_TRACE
  u64 trace[3];
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(trace[0]));
#endif
  float acc[AR_NACC][NT][AR_MT][4];
#pragma unroll
  for (int h = 0; h < AR_NACC; ++h)
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int mt = 0; mt < AR_MT; ++mt)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[h][t][mt][j] = 0.f;

  // Two step buffers in registers, taking turns: each step's loads are issued before the step
  // before it is computed, into registers nothing reads yet. (A third buffer, loads two steps
  // ahead at 72 registers, was slower: benchmarks/kernel_bench_notes.md.) The first step's loads
  // go out before the wait for x.
#if AR_RING
  ring_loop<NT>(gv, acc, kb0, warp);
#elif AR_BULK
  bulk_loop<NT>(gv, acc, kb0, warp);
#elif AR_RB3
  if (kb0 < gv.kb1) rb3_loop<NT>(gv, acc, kb0);
#elif AR_FIX
  fix_loop<NT>(gv, acc, kb0);
#elif AR_DYN
  dyn_loop<NT>(gv, acc, warp, gv.kb1);
#else
  Step<NT> a, b;
  if (kb0 < gv.kb1) gv.load_any<NT>(a, kb0);
#if AR_XSMEM
  x_wait();
#endif
  if (kb0 < gv.kb1) {
    for (int kb = kb0;; kb += (2 + 2 * AR_UNROLL4) * AR_KSTEP) {
      if (!gv.step<NT>(acc, a, b, kb)) break;
      if (!gv.step<NT>(acc, b, a, kb + AR_KSTEP)) break;
#if AR_UNROLL4
      if (!gv.step<NT>(acc, a, b, kb + 2 * AR_DEPTH)) break;
      if (!gv.step<NT>(acc, b, a, kb + 3 * AR_DEPTH)) break;
#endif
    }
  }
#endif

#if AR_TRACE
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(trace[1]));
#endif
  // Sum the K slices: D fragment value j of lane l is (column n0 + l/4 + 8*(j/2), row 2*(l%4) + j%2).
  constexpr int R = NT * AR_MT * 4;  // values per lane
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt)
#pragma unroll
      for (int j = 0; j < 4; ++j) red[((AR_XBLK ? 0 : warp) * R + (t * AR_MT + mt) * 4 + j) * 32 + lane] =
#if AR_NACC == 2
            acc[0][t][mt][j] + acc[1][t][mt][j];
#else
            acc[0][t][mt][j];
#endif
  group_sync(group, ks);
  for (int v = AR_XBLK ? lane : tid; v < R * 32; v += (AR_XBLK ? 1 : ks) * 32) {
    const int l = v & 31, r = v >> 5, t = r / (AR_MT * 4), mt = (r >> 2) % AR_MT, j = r & 3;
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < AR_RED_WARPS; ++w)
      if (w < (AR_XBLK ? 1 : ks)) s += red[(w * R + r) * 32 + l];
    const int n = (tile + t) * 16 + (l >> 2) + 8 * (j >> 1);
    const int m = 8 * mt + 2 * (l & 3) + (j & 1);
    if (m < M && n < N) {
      if (has_bias) s += act2f(bias[n]);
      out[(u64)m * ldo + n] = f2act(s);
    }
  }
#if AR_TRACE
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(trace[2]));
  if (lane == 0) {
    u64* tr = reinterpret_cast<u64*>(const_cast<u16*>(bias)) + ((u64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * (AR_TRACE + 2);
    tr[0] = trace[0], tr[1] = trace[1], tr[2] = trace[2];
#if AR_TRACE == 2  // and the SM
    u32 sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    tr[3] = sm;
#endif
  }
#endif
}

// out (M, N) = x (M, K) @ W (K, N) [+ bias], 1 <= M <= 8 * AR_MT. Grid: blocks of AR_KSPLIT warps, the
// first `nfull` of AR_NT 16-column tiles, the others of AR_NT - 1 (so that each SM gets about the same
// number of tiles where tiles / AR_NT blocks would not spread evenly); warp w takes steps
// [S w / AR_KSPLIT, S (w + 1) / AR_KSPLIT) of the S = ceil(K / 64 / AR_DEPTH).
extern "C" __global__ void __launch_bounds__(AR_XBLK ? 32 : (AR_KSPLIT + AR_PAIR * AR_KS1) * 32, AR_MINB)
ar_w4_gemv(const u32x4* __restrict__ qrep, const u32* __restrict__ params, const u16* __restrict__ x,
           const u16* __restrict__ bias, u16* __restrict__ out, int M, int N, int K, int ldx, int ldo,
           int has_bias, int nfull) {
  // A group is AR_KSPLIT warps sharing tiles (two per block where AR_PAIR, so that a full and a short
  // group always share an SM); groups are numbered b.
#if AR_XBLK
  const int group = 0, ks = AR_KSPLIT, warp = blockIdx.x % AR_KSPLIT, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int b = blockIdx.x / AR_KSPLIT, groups = gridDim.x / AR_KSPLIT;
#else
  const int group = AR_PAIR && (threadIdx.x >> 5) >= AR_KSPLIT ? 1 : 0, ks = group ? AR_KS1 : AR_KSPLIT;
  const int warp = (threadIdx.x >> 5) - group * AR_KSPLIT, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int b = blockIdx.x * (1 + AR_PAIR) + group, groups = gridDim.x * (1 + AR_PAIR);
#endif
#if AR_MIXALT || AR_PAIR  // the first 2 nfull groups alternate full and short (2 nfull <= groups)
  const bool full = b < 2 * nfull && !(b & 1);
  const int tile = b < 2 * nfull ? (b >> 1) * (2 * AR_NT - 1) + (b & 1) * AR_NT
                                 : nfull * (2 * AR_NT - 1) + (b - 2 * nfull) * (AR_NT - 1);
#else
  const bool full = b < nfull;
  const int tile = full ? b * AR_NT : nfull * AR_NT + (b - nfull) * (AR_NT - 1);
#endif
  const int tiles = nfull * AR_NT + (groups - nfull) * (AR_NT - 1);
  const int nkb = K >> 6, nst = (nkb + AR_DEPTH - 1) / AR_DEPTH;
  const int kb0 = AR_ILV ? warp * AR_DEPTH : nst * warp / ks * AR_DEPTH;

  Gemv gv;
  gv.wq = reinterpret_cast<const char*>(qrep + (tile * AR_KCHUNK * 32 + lane));
  gv.cstride = (u32)tiles * AR_KCHUNK * 512;
  gv.pq = reinterpret_cast<const char*>(params + (tile * 8 + g) * AR_PW);
  gv.pstride = (u32)tiles * 32 * AR_PW;
  gv.c = c;
  gv.kb1 = AR_ILV || AR_DYN ? nkb : min(nst * (warp + 1) / ks * AR_DEPTH, nkb);
  // Rows past M read row M - 1: an mma output row depends on its own x row only, and it is not stored.
#if AR_XSMEM
  const u32 xbase = AR_XSMEM == 1 ? x_stage(x, M, K, ldx, 0, K >> 3) : x_stage(x, M, K, ldx, kb0 * 8, gv.kb1 * 8);
  const u32 xrow = (u32)(K + 8) * 2u;
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) gv.xr[mt] = xbase + (u32)min(8 * mt + g, M - 1) * xrow + 32u * c;
#else
#pragma unroll
  for (int mt = 0; mt < AR_MT; ++mt) gv.xr[mt] = x + (u64)min(8 * mt + g, M - 1) * ldx + 16 * c;
#endif

  constexpr int RED = AR_RED_WARPS * AR_NT * AR_MT * 4 * 32;
  __shared__ float red[RED * (1 + AR_PAIR)];
#if AR_NT > 1
  if (!full) {
    gemv_block<AR_NT - 1>(gv, kb0, tile, warp, group, ks, red + group * RED, bias, out, M, N, ldo, has_bias);
    return;
  }
#endif
  gemv_block<AR_NT>(gv, kb0, tile, warp, group, ks, red + group * RED, bias, out, M, N, ldo, has_bias);
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
