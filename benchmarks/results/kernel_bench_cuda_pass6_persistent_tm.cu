// Pass 6 probe (benchmarks/kernel_bench_cuda_pass6.py): pass 5's persistent GEMV, its step load generalised to
// chunks larger than a step (the tile-major layout). Not shipped.
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
// Accumulation is fp32 (mma); tiles split between warps are summed in a fixed order (ar_w4_gemv).
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
#ifndef AR_BWARPS
#define AR_BWARPS 8    // GEMV warps per block
#endif
#ifndef AR_DEPTH
#define AR_DEPTH 2     // 64-k blocks per step; each lane loads the next step's while it computes one
#endif
#ifndef AR_MINB
#define AR_MINB 4      // GEMV blocks that must fit one SM (bounds the registers: 64K / (AR_MINB * AR_BWARPS * 32))
#endif
#ifndef AR_DQ_STAGE
#define AR_DQ_STAGE 1  // the dequantization kernel's stores: through shared memory, whole rows (1), or direct (0)
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
  u32x4 w[AR_DEPTH];
  Par p[AR_NP];
};

// base + i * stride bytes in one instruction (IMAD.WIDE.U32).
__device__ __forceinline__ const char* at(const void* base, u32 i, u32 stride) {
  u64 r;
  asm("mad.wide.u32 %0, %1, %2, %3;" : "=l"(r) : "r"(i), "r"(stride), "l"(base));
  return reinterpret_cast<const char*>(r);
}

// floor(n * i / d) without overflow: the start of part i of n split into d near-equal parts.
__device__ __forceinline__ u32 span(u32 n, u32 i, u32 d) { return (u32)((u64)n * i / d); }

// Output value j of a D fragment held by lane l: column 16 t + l/4 + 8 (j/2), row 8 mt + 2 (l%4) + j%2.
__device__ __forceinline__ void store_out(u16* __restrict__ out, const u16* __restrict__ bias, int has_bias, int M,
                                          int N, int ldo, u32 t, int r, int l, float s) {
  const int n = (int)t * 16 + (l >> 2) + 8 * ((r & 3) >> 1);
  const int m = 8 * (r >> 2) + 2 * (l & 3) + (r & 1);
  if (m < M && n < N) {
    if (has_bias) s += act2f(bias[n]);
    out[(u64)m * ldo + n] = f2act(s);
  }
}

struct Gemv {
  const char* wq;       // qrep + lane: block kb of tile t at wq + (kb / P) * cstride + (t * P + kb % P) * 512 bytes
  u32 cstride;          // tiles * P * 512
  const char* pq;       // params + g * AR_PW: group i of tile t at pq + i * pstride + t * 32 * AR_PW bytes
  u32 pstride;          // tiles * 32 * AR_PW
  const u16* xr[AR_MT]; // x row of each n8 tile's lane g, + 16 c
  int c, nkb;

  // Loads the step at 64-k block kb (a multiple of AR_DEPTH) of tile t; FULL: all of its blocks are
  // < nkb (else only those that are). The layout's chunk P divides AR_DEPTH: one address per chunk.
  template <bool FULL>
  __device__ __forceinline__ void load(Step& s, u32 t, int kb) const {
    const char* wt = wq + t * (AR_KCHUNK * 512);
    const char* pt = pq + t * (32 * AR_PW);
#if AR_KCHUNK <= AR_DEPTH
#pragma unroll
    for (int h = 0; h < AR_DEPTH / AR_KCHUNK; ++h) {
      const char* w = at(wt, (u32)kb / AR_KCHUNK + h, cstride);
#pragma unroll
      for (int i = 0; i < AR_KCHUNK; ++i)
        if (FULL || kb + h * AR_KCHUNK + i < nkb) s.w[h * AR_KCHUNK + i] = ldg_stream(w + i * 512);
    }
#else  // pass 6: P > AR_DEPTH (P = K / 64 is the tile-major layout: a warp's run is one contiguous range)
    const char* w = at(wt, (u32)kb / AR_KCHUNK, cstride) + (u32)kb % AR_KCHUNK * 512;
#pragma unroll
    for (int i = 0; i < AR_DEPTH; ++i)
      if (FULL || kb + i < nkb) s.w[i] = ldg_stream(w + i * 512);
#endif
#pragma unroll
    for (int j = 0; j < AR_NP; ++j)
      if (FULL || kb + j * AR_PB < nkb) s.p[j] = load_par(at(pt, group_of(kb + j * AR_PB, c), pstride));
  }

  __device__ __forceinline__ void load_any(Step& s, u32 t, int kb) const {
    if (kb + AR_DEPTH <= nkb) load<true>(s, t, kb);
    else load<false>(s, t, kb);
  }

  // Multiplies the step at block kb into the two accumulators (even and odd blocks).
  template <bool FULL>
  __device__ __forceinline__ void compute(float (&acc)[2][AR_MT][4], const Step& s, int kb) const {
    const u16* xs[AR_MT];
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) xs[mt] = xr[mt] + kb * 64;
#pragma unroll
    for (int j = 0; j < AR_NP; ++j) {
      if (!FULL && kb + j * AR_PB >= nkb) break;
      const Col lo = col_of<0>(s.p[j]), hi = col_of<1>(s.p[j]);
#pragma unroll
      for (int ii = 0; ii < AR_PB; ++ii) {
        const int i = j * AR_PB + ii;
        if (FULL || kb + i < nkb) block(acc[i & 1], s.w[i], lo, hi, xs, i * 64);
      }
    }
  }

  // One 64-k block: the lane's four words dequantized and multiplied with x's rows (at xs + off).
  __device__ __forceinline__ void block(float (&acc)[AR_MT][4], const u32x4& q, const Col& lo, const Col& hi,
                                        const u16* const (&xs)[AR_MT], int off) const {
    u32x4 xv[AR_MT][2];
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) {
      xv[mt][0] = ldg(xs[mt] + off);
      xv[mt][1] = ldg(xs[mt] + off + 8);
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
};

#define AR_PART (AR_MT * 4 * 32)  // floats of one tile's partial sums (D fragments of a warp)

// out (M, N) = x (M, K) @ W (K, N) [+ bias], 1 <= M <= 8 * AR_MT, as a persistent grid (about one
// wave; any grid size works): the tiles * S steps (S = ceil(K / 64 / AR_DEPTH) per 16-column tile,
// tile-major) are split into gridDim.x equal block ranges, each into AR_BWARPS equal warp ranges.
// A warp streams its range across tile boundaries (the next step's loads are issued before a
// step is computed, also across a tile end), writes a tile it covers whole straight to `out`
// and the partial sums of the tiles it shares to shared memory. A block sums its shared tiles in
// warp order; a tile shared with other blocks goes through `ws` (fp32, gridDim.x * 2 * AR_PART)
// and the per-tile counter `cnt` (zero at the start, reset by the block that finishes the tile):
// the last block to arrive sums the blocks' partials in block order (deterministic) and stores.
// Counters make concurrent launches of one layer on two streams unsafe.
extern "C" __global__ void __launch_bounds__(AR_BWARPS * 32, AR_MINB)
ar_w4_gemv(const u32x4* __restrict__ qrep, const u32* __restrict__ params, const u16* __restrict__ x,
           const u16* __restrict__ bias, u16* __restrict__ out, float* __restrict__ ws, int* __restrict__ cnt,
           int M, int N, int K, int ldx, int ldo, int has_bias) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, c = lane & 3;
  const u32 tiles = (u32)(N + 15) >> 4, nkb = (u32)K >> 6, nst = (nkb + AR_DEPTH - 1) / AR_DEPTH;
  const u32 U = tiles * nst, B = gridDim.x, b = blockIdx.x;
  const u32 bu0 = span(U, b, B), bu1 = span(U, b + 1, B);  // the host keeps B <= U: bu0 < bu1
  const u32 u0 = bu0 + span(bu1 - bu0, warp, AR_BWARPS), u1 = bu0 + span(bu1 - bu0, warp + 1, AR_BWARPS);

  __shared__ float part[AR_BWARPS][2][AR_PART];  // per warp: its first and last shared tile
  __shared__ int fin[2];

  if (u0 < u1) {
    Gemv gv;
    gv.wq = reinterpret_cast<const char*>(qrep + lane);
    gv.cstride = tiles * AR_KCHUNK * 512;
    gv.pq = reinterpret_cast<const char*>(params + g * AR_PW);
    gv.pstride = tiles * 32 * AR_PW;
    gv.c = c;
    gv.nkb = (int)nkb;
    // Rows past M read row M - 1: an mma output row depends on its own x row only, and it is not stored.
#pragma unroll
    for (int mt = 0; mt < AR_MT; ++mt) gv.xr[mt] = x + (u64)min(8 * mt + g, M - 1) * ldx + 16 * c;

    float acc[2][AR_MT][4];
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int mt = 0; mt < AR_MT; ++mt)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[h][mt][j] = 0.f;

    u32 t = u0 / nst;
    int s = (int)(u0 - t * nst), s0 = s, rem = (int)(u1 - u0), slot = 0;
    // One step: start the next step's loads (maybe the next tile's) into `nxt`, compute `cur`,
    // and at a tile's end (or the range's) hand its sums on. False after the warp's last step.
    auto step = [&](const Step& cur, Step& nxt) -> bool {
      // The base addresses pass through an empty asm each step: ptxas then keeps them in registers
      // instead of recomputing them from the thread index and the arguments.
      asm volatile("" : "+l"(gv.wq), "+l"(gv.pq));
#pragma unroll
      for (int mt = 0; mt < AR_MT; ++mt) asm volatile("" : "+l"(gv.xr[mt]));
      const bool tile_end = s + 1 == (int)nst;
      if (rem > 1) gv.load_any(nxt, tile_end ? t + 1 : t, tile_end ? 0 : (s + 1) * AR_DEPTH);
      if ((s + 1) * AR_DEPTH <= (int)nkb) gv.compute<true>(acc, cur, s * AR_DEPTH);
      else gv.compute<false>(acc, cur, s * AR_DEPTH);
      --rem;
      if (tile_end || rem == 0) {
        const bool whole = s0 == 0 && tile_end;
#pragma unroll
        for (int mt = 0; mt < AR_MT; ++mt)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float v = acc[0][mt][j] + acc[1][mt][j];
            acc[0][mt][j] = acc[1][mt][j] = 0.f;
            if (whole) store_out(out, bias, has_bias, M, N, ldo, t, mt * 4 + j, lane, v);
            else part[warp][slot][(mt * 4 + j) * 32 + lane] = v;
          }
        slot = 1;  // a warp's later shared tile is its last
        ++t;
        s = s0 = 0;
      } else {
        ++s;
      }
      return rem > 0;
    };
    // Two step buffers in registers, taking turns.
    Step a, bb;
    gv.load_any(a, t, s * AR_DEPTH);
    for (;;) {
      if (!step(a, bb)) break;
      if (!step(bb, a)) break;
    }
  }
  __syncthreads();

  // The block's tiles that no single warp covered: sums over warps in order.
  const u32 tb0 = bu0 / nst, tb1 = (bu1 - 1) / nst;
  for (u32 i = threadIdx.x; i < (tb1 - tb0 + 1) * AR_PART; i += AR_BWARPS * 32) {
    const u32 t = tb0 + i / AR_PART, t0 = t * nst, t1 = t0 + nst;
    const int v = (int)(i % AR_PART);
    float sum = 0.f;
    bool owned = false;
    for (int w = 0; w < AR_BWARPS; ++w) {
      const u32 w0 = bu0 + span(bu1 - bu0, w, AR_BWARPS), w1 = bu0 + span(bu1 - bu0, w + 1, AR_BWARPS);
      if (w0 >= w1 || w0 >= t1 || w1 <= t0) continue;
      if (w0 <= t0 && w1 >= t1) {
        owned = true;  // stored by that warp
        break;
      }
      sum += part[w][w0 / nst == t ? 0 : 1][v];
    }
    if (owned) continue;
    if (t0 >= bu0 && t1 <= bu1) store_out(out, bias, has_bias, M, N, ldo, t, v >> 5, v & 31, sum);
    else ws[(b * 2 + (t == tb0 ? 0 : 1)) * AR_PART + v] = sum;
  }

  // Tiles shared with other blocks: the last block to arrive finishes them.
  const bool shared0 = tb0 * nst < bu0 || (tb0 + 1) * nst > bu1;
  const bool shared1 = tb1 != tb0 && (tb1 + 1) * nst > bu1;
  if (!shared0 && !shared1) return;
  __threadfence();
  __syncthreads();
  if (threadIdx.x < 2) {
    const u32 t = threadIdx.x ? tb1 : tb0;
    bool f = false;
    if (threadIdx.x ? shared1 : shared0) {
      // blocks holding a part of tile t: the block of its first step .. the block of its last
      const u32 first = (u32)(((u64)(t * nst + 1) * B + U - 1) / U) - 1, last = (u32)(((u64)(t * nst + nst) * B + U - 1) / U) - 1;
      f = atomicAdd(&cnt[t], 1) == (int)(last - first);
      if (f) cnt[t] = 0;  // every one has arrived: ready for the next launch
    }
    fin[threadIdx.x] = f;
  }
  __syncthreads();
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!fin[h]) continue;
    __threadfence();
    const u32 t = h ? tb1 : tb0;
    const u32 first = (u32)(((u64)(t * nst + 1) * B + U - 1) / U) - 1, last = (u32)(((u64)(t * nst + nst) * B + U - 1) / U) - 1;
    for (int v = threadIdx.x; v < AR_PART; v += AR_BWARPS * 32) {
      float sum = 0.f;
      for (u32 o = first; o <= last; ++o)
        sum += __ldcg(ws + (o * 2 + (span(U, o, B) / nst == t ? 0 : 1)) * AR_PART + v);
      store_out(out, bias, has_bias, M, N, ldo, t, v >> 5, v & 31, sum);
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
  // row n of W as 16-byte chunks: lane c writes chunks 2 * (4 * kb + c) + {0, 1}
  u32x4* w_lo = w + (u64)n_lo * (K >> 3) + 2 * c;
  u32x4* w_hi = w + (u64)(n_lo + 8) * (K >> 3) + 2 * c;
  const bool ok_lo = n_lo < N, ok_hi = n_lo + 8 < N;
#if AR_DQ_STAGE
  // Each warp's 16 rows x 64 k pass through its own 2 KB of shared memory (16-byte chunks, XOR
  // swizzled: no bank conflicts), so that each store writes 4 whole 128-byte rows.
  __shared__ u32x4 stage[8][16 * 8];
  u32x4* st = stage[warp];
  const int r_out = lane >> 3, j_out = lane & 7;
  u32x4* w_out = w + (u64)(tile * 16 + r_out) * (K >> 3) + j_out;
#endif
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
#if AR_DQ_STAGE
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
#else
    if (ok_lo) {
      w_lo[8 * k] = u32x4{a0[0], a0[2], a1[0], a1[2]};
      w_lo[8 * k + 1] = u32x4{a2[0], a2[2], a3[0], a3[2]};
    }
    if (ok_hi) {
      w_hi[8 * k] = u32x4{a0[1], a0[3], a1[1], a1[3]};
      w_hi[8 * k + 1] = u32x4{a2[1], a2[3], a3[1], a3[3]};
    }
#endif
  }
}
