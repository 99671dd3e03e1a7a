// Issue #6, pass 10: a warp-specialized GEMV. Appended to the shipped _w4_mma.cu (compiled with AR_XSMEM 1 and
// AR_KCHUNK 1: its helpers dequant / mma / col_of / load_x are reused), run by kernel_bench_cuda_pass10.py.
//
// One block owns AR_WT adjacent 16-column tiles. Its last warp is the producer: lane 0 streams the block's weight
// and constants into a ring of AR_NS shared-memory stages with TMA bulk copies (one copy per 64-k block: the
// AR_WT tiles' chunks are contiguous in the kchunk-1 layout; one per group for the constants), each stage with a
// "full" mbarrier (transaction bytes) and an "empty" one (one arrive per consumer warp). The other AR_WT * AR_KS2
// warps consume: warp w takes tile w % AR_WT and, of each stage's AR_SB 64-k blocks, those b = w / AR_WT
// (mod AR_KS2). No consumer waits on a global load: the copies of AR_NS - 1 stages are in flight while they compute.
// x's rows are staged in shared memory by the consumers first (rows K + 8 elements apart).

#ifndef AR_WT
#define AR_WT 7      // tiles per block
#endif
#ifndef AR_KS2
#define AR_KS2 2     // consumer warps per tile (each a share of every stage's blocks)
#endif
#ifndef AR_SB
#define AR_SB 4      // 64-k blocks per stage
#endif
#ifndef AR_NS
#define AR_NS 4      // stages in the ring
#endif
#ifndef AR_WS_FULL
#define AR_WS_FULL 0   // 1: K is a multiple of 64 * AR_SB (no partial stage: the blocks of a stage interleave)
#endif
#ifndef AR_WS_NOPROD
#define AR_WS_NOPROD 0 // 1: no copies, no waits: consumers compute on whatever the ring holds (a timing bound)
#endif
#ifndef AR_WS_MATH
#define AR_WS_MATH 1   // 0: consumers only load (wrong results; a timing bound)
#endif
#define AR_CW (AR_WT * AR_KS2)
#if AR_SB % AR_KCHUNK
#error AR_KCHUNK must divide AR_SB
#endif
#if AR_SB % AR_KS2
#error AR_KS2 must divide AR_SB
#endif
#define AR_SW (AR_WT * 512)                                      // weight bytes of one 64-k block of the block's tiles
#define AR_SP (AR_WT * 8 * AR_PW * 4)                            // constant bytes of one group of them
#define AR_PG (AR_SB * 64 >= AR_GROUP ? AR_SB * 64 / AR_GROUP : 1)  // groups per stage (at most)
#define AR_STAGE (AR_SB * AR_SW + AR_PG * AR_SP)

__device__ __forceinline__ u32 smem_addr(const void* p) {
  u32 a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
  u32 done = 0;
  while (!done)
    asm volatile("{ .reg .pred P; mbarrier.try_wait.parity.shared::cta.b64 P, [%1], %2; selp.u32 %0, 1, 0, P; }"
                 : "=r"(done) : "r"(bar), "r"(parity) : "memory");
}
__device__ __forceinline__ void bulk_copy(u32 dst, const void* src, u32 bytes, u32 bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               :: "r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
__device__ __forceinline__ Par lds_par(u32 a) {
  Par r;
#if AR_PW == 4
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.w[0]), "=r"(r.w[1]), "=r"(r.w[2]), "=r"(r.w[3]) : "r"(a));
#elif AR_PW == 2
  asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];" : "=r"(r.w[0]), "=r"(r.w[1]) : "r"(a));
#else
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(r.w[0]) : "r"(a));
#endif
  return r;
}

// out (M, N) = x (M, K) @ W, 1 <= M <= 8. Grid: N / 16 / AR_WT blocks of AR_CW + 1 warps; dynamic shared memory:
// AR_NS * AR_STAGE + 16 * AR_NS (barriers) + min(M, 8) * (K + 8) * 2 (x).
extern "C" __global__ void __launch_bounds__((AR_CW + 1) * 32, 1)
ar_w4_gemv_ws(const u32x4* __restrict__ qrep, const u32* __restrict__ params, const u16* __restrict__ x,
              u16* __restrict__ out, int M, int N, int K, int ldx, int ldo) {
  extern __shared__ __align__(128) unsigned char ws_smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int t0 = blockIdx.x * AR_WT, tiles = gridDim.x * AR_WT, nkb = K >> 6, nst = (nkb + AR_SB - 1) / AR_SB;
  const u32 ring = smem_addr(ws_smem), bars = ring + AR_NS * AR_STAGE, xbase = bars + 16 * AR_NS;
  // full[s] at bars + 8 s, empty[s] at bars + 8 (AR_NS + s)
  if (threadIdx.x == 0) {
    for (int s = 0; s < AR_NS; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(bars + 8 * s) : "memory");
      asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bars + 8 * (AR_NS + s)), "n"(AR_CW) : "memory");
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (warp == AR_CW) {  // producer
    if (lane != 0 || AR_WS_NOPROD) return;
    const char* wsrc = reinterpret_cast<const char*>(qrep) + (size_t)t0 * AR_KCHUNK * 512;
    const char* psrc = reinterpret_cast<const char*>(params) + (size_t)t0 * 8 * AR_PW * 4;
    const size_t wstride = (size_t)tiles * AR_KCHUNK * 512, pstride = (size_t)tiles * 8 * AR_PW * 4;
    for (int s = 0; s < nst; ++s) {
      const int slot = s % AR_NS;
      if (s >= AR_NS) mbar_wait(bars + 8 * (AR_NS + slot), ((s / AR_NS) - 1) & 1);
      const int kb0 = s * AR_SB, kb1 = min(kb0 + AR_SB, nkb);
      const int g0 = kb0 * 64 / AR_GROUP, g1 = (kb1 * 64 - 1) / AR_GROUP;
      const u32 bytes = (u32)(kb1 - kb0) * AR_SW + (u32)(g1 - g0 + 1) * AR_SP;
      const u32 full = bars + 8 * slot, dst = ring + (u32)slot * AR_STAGE;
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(full), "r"(bytes) : "memory");
      // the layout stores AR_KCHUNK blocks of a tile together: one copy per chunk of the block's tiles
      for (int kb = kb0; kb < kb1; kb += AR_KCHUNK)
        bulk_copy(dst + (u32)(kb - kb0) * AR_SW, wsrc + (size_t)(kb / AR_KCHUNK) * wstride, AR_SW * AR_KCHUNK, full);
      for (int gi = g0; gi <= g1; ++gi)
        bulk_copy(dst + AR_SB * AR_SW + (u32)(gi - g0) * AR_SP, psrc + gi * pstride, AR_SP, full);
    }
    return;
  }

  // consumers: stage x, then the ring
  const int rows = min(M, 8), per_row = K >> 3;
  const u32 row_bytes = (u32)(K + 8) * 2u;
  for (int v = threadIdx.x; v < rows * per_row; v += AR_CW * 32) {
    const int r = v / per_row, ch = v - r * per_row;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(xbase + r * row_bytes + ch * 16u),
                 "l"(x + (u64)r * ldx + ch * 8));
  }
  asm volatile("cp.async.wait_all;" ::: "memory");
  asm volatile("bar.sync 1, %0;" :: "n"(AR_CW * 32) : "memory");

  const int t = warp % AR_WT, h = warp / AR_WT;
  const u32 xr = xbase + (u32)min(g, M - 1) * row_bytes + 32u * c;
  float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
  for (int s = 0; s < nst; ++s) {
    const int slot = s % AR_NS, kb0 = s * AR_SB, g0 = kb0 * 64 / AR_GROUP;
    const u32 st = ring + (u32)slot * AR_STAGE;
    if (!AR_WS_NOPROD) mbar_wait(bars + 8 * slot, (s / AR_NS) & 1);
#pragma unroll
    for (int i = 0; i < AR_SB / AR_KS2; ++i) {
      const int b = h + i * AR_KS2, kb = kb0 + b;
      if (AR_WS_FULL || kb < nkb) {
        u32x4 q;
        asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(q.x), "=r"(q.y), "=r"(q.z), "=r"(q.w)
                     : "r"(st + (u32)(b / AR_KCHUNK) * AR_SW * AR_KCHUNK + (t * AR_KCHUNK + b % AR_KCHUNK) * 512 + 16 * lane));
        const int gi = group_of(kb, c) - g0;
        const Par p = lds_par(st + AR_SB * AR_SW + (u32)gi * AR_SP + (t * 8 + g) * AR_PW * 4);
        const Col lo = col_of<0>(p), hi = col_of<1>(p);
        const u32 xs = xr + (u32)kb * 128u;
        const u32x4 x0 = load_x(xs), x1 = load_x(xs + 16);
#if AR_WS_MATH == 0  // timing bound: the loads only
        acc[0][0] += __int_as_float((q.x ^ q.y ^ q.z ^ q.w ^ p.w[0] ^ x0.x ^ x1.w) & 0x1);
        continue;
#endif
        u32 a[4];
        dequant(q.x, lo, hi, a);
        mma(acc[0], a, x0.x, x0.y);
        dequant(q.y, lo, hi, a);
        mma(acc[1], a, x0.z, x0.w);
        dequant(q.z, lo, hi, a);
        mma(acc[0], a, x1.x, x1.y);
        dequant(q.w, lo, hi, a);
        mma(acc[1], a, x1.z, x1.w);
      }
    }
    __syncwarp();
    if (lane == 0) asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bars + 8 * (AR_NS + slot)) : "memory");
  }

  // Sum the AR_KS2 warps of each tile: D value j of lane l is (column n0 + l/4 + 8 (j/2), row 2 (l%4) + j%2).
  __shared__ float red[AR_CW][4][32];
#pragma unroll
  for (int j = 0; j < 4; ++j) red[warp][j][lane] = acc[0][j] + acc[1][j];
  asm volatile("bar.sync 1, %0;" :: "n"(AR_CW * 32) : "memory");
  for (int v = threadIdx.x; v < AR_WT * 4 * 32; v += AR_CW * 32) {
    const int l = v & 31, j = (v >> 5) & 3, tt = v >> 7;
    float sum = 0.f;
#pragma unroll
    for (int k2 = 0; k2 < AR_KS2; ++k2) sum += red[k2 * AR_WT + tt][j][l];
    const int n = (t0 + tt) * 16 + (l >> 2) + 8 * (j >> 1), m = 2 * (l & 3) + (j & 1);
    if (m < M && n < N) out[(u64)m * ldo + n] = f2act(sum);
  }
}
