"""ggml block packing: our codes and scales -> the bytes of a GGUF tensor (torch only).

Every function takes one weight matrix's parts, rows first, and returns uint8 ``(rows, nbytes)``
where ``nbytes = in_features / block * type_size``: exactly what ``gguf.GGUFWriter.add_tensor``
takes with ``raw_dtype`` set to the ggml type. Inputs follow ar_schemes' conventions:

- ``codes`` uint8 (rows, in), unsigned: legacy sym types store ``q + 2^(b-1)`` (q8_0: ``q + 128``),
  k-quants sym types ``q + 2^(b-1)``, asym types the plain code;
- ``d`` / ``dmin`` / ``m`` (legacy min) fp16 per block; ``sc`` / ``m`` (k-quants) small ints per
  sub-group, signed for q3_k / q6_k.

Layouts (ggml's block structs, little-endian):
  q4_0 {d, qs[16]}            q4_1 {d, m, qs[16]}         q5_0 {d, qh[4], qs[16]}
  q5_1 {d, m, qh[4], qs[16]}  q8_0 {d, int8 qs[32]}       iq4_nl {d, qs[16]}
  q2_k {scales[16], qs[64], d, dmin}      q3_k {hmask[32], qs[64], scales[12], d}
  q4_k {d, dmin, scales[12], qs[128]}     q5_k {d, dmin, scales[12], qh[32], qs[128]}
  q6_k {ql[128], qh[64], int8 scales[16], d}
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

QK_K = 256
# ggml type -> (weights per block, bytes per block)
BLOCK_SIZES: dict[str, tuple[int, int]] = {
    "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24), "q8_0": (32, 34),
    "iq4_nl": (32, 18), "q2_k": (QK_K, 84), "q3_k": (QK_K, 110), "q4_k": (QK_K, 144),
    "q5_k": (QK_K, 176), "q6_k": (QK_K, 210),
}


def _blocks(t: Tensor, per_block: int) -> Tensor:
    """(rows, n) -> (rows * n / per_block, per_block) as int32 (room for shifts)."""
    return t.reshape(-1, per_block).to(torch.int32)


def _combine(x: Tensor, shape: tuple[int, int, int], nbits: int) -> Tensor:
    """OR ``P`` values of ``nbits`` into each byte: x viewed (nb, A, P, N) -> (nb, A * N) uint8.

    Value ``x[:, a, p, i]`` lands in byte ``a * N + i`` at bit ``p * nbits``.
    """
    a, p, n = shape
    x = x.reshape(-1, a, p, n)
    shifts = (torch.arange(p, dtype=torch.int32) * nbits).reshape(1, 1, p, 1)
    mask = (1 << nbits) - 1
    return ((x & mask) << shifts).sum(dim=2).reshape(x.shape[0], a * n).to(torch.uint8)


def _half_bytes(t: Tensor) -> Tensor:
    """fp16 values (any shape) -> (numel, 2) little-endian bytes."""
    return t.reshape(-1, 1).to(torch.float16).contiguous().view(torch.uint8).reshape(-1, 2)


def _rows(parts: list[Tensor], rows: int) -> Tensor:
    """Concatenate per-block byte pieces (nb, k_i) and lay the blocks out row by row."""
    return torch.cat(parts, dim=1).reshape(rows, -1).contiguous()


def _check(codes: Tensor, qtype: str) -> None:
    block = BLOCK_SIZES[qtype][0]
    if codes.dim() != 2 or codes.shape[1] % block:
        raise ValueError(f"{qtype} packs rows whose length is a multiple of {block}; got codes of shape "
                         f"{tuple(codes.shape)}. Keep such a tensor in another type (llama.cpp falls back too)")


# ---- legacy 32-weight blocks -------------------------------------------------------------------
def _nibbles32(c: Tensor) -> Tensor:
    """Low nibbles of 32 codes: byte j = c[j] | c[j + 16] << 4."""
    return _combine(c, (1, 2, 16), 4)


def _high_bits32(c: Tensor, bit: int) -> Tensor:
    """Bit ``bit`` of 32 codes as one little-endian uint32: bit j of the word = code j."""
    return _combine((c >> bit).reshape(-1, 4, 8, 1), (4, 8, 1), 1)


def pack_q4_0(codes: Tensor, d: Tensor) -> Tensor:
    _check(codes, "q4_0")
    c = _blocks(codes, 32)
    return _rows([_half_bytes(d), _nibbles32(c)], codes.shape[0])


def pack_iq4_nl(codes: Tensor, d: Tensor) -> Tensor:
    """Same bytes as q4_0; the nibbles index the iq4_nl levels instead of ``q + 8``."""
    _check(codes, "iq4_nl")
    return pack_q4_0(codes, d)


def pack_q4_1(codes: Tensor, d: Tensor, m: Tensor) -> Tensor:
    _check(codes, "q4_1")
    c = _blocks(codes, 32)
    return _rows([_half_bytes(d), _half_bytes(m), _nibbles32(c)], codes.shape[0])


def pack_q5_0(codes: Tensor, d: Tensor) -> Tensor:
    _check(codes, "q5_0")
    c = _blocks(codes, 32)
    return _rows([_half_bytes(d), _high_bits32(c, 4), _nibbles32(c)], codes.shape[0])


def pack_q5_1(codes: Tensor, d: Tensor, m: Tensor) -> Tensor:
    _check(codes, "q5_1")
    c = _blocks(codes, 32)
    return _rows([_half_bytes(d), _half_bytes(m), _high_bits32(c, 4), _nibbles32(c)], codes.shape[0])


def pack_q8_0(codes: Tensor, d: Tensor) -> Tensor:
    """codes are ``q + 128`` with q in [-127, 127]; ggml stores q as int8."""
    _check(codes, "q8_0")
    q = (_blocks(codes, 32) - 128).to(torch.int8).view(torch.uint8)
    return _rows([_half_bytes(d), q], codes.shape[0])


# ---- k-quants (256-weight super-blocks) ---------------------------------------------------------
def _scales_6bit(sc: Tensor, m: Tensor) -> Tensor:
    """Eight 6-bit scales and eight 6-bit mins of q4_k / q5_k into 12 bytes.

    Bytes 0-3: sc[0:4] | top 2 bits of sc[4:8] << 6; bytes 4-7: m[0:4] | top 2 bits of m[4:8] << 6;
    bytes 8-11: low 4 bits of sc[4:8] | low 4 bits of m[4:8] << 4.
    """
    sc, m = sc.reshape(-1, 8), m.reshape(-1, 8)
    lo = torch.cat([sc[:, :4] | ((sc[:, 4:] >> 4) << 6), m[:, :4] | ((m[:, 4:] >> 4) << 6)], dim=1)
    hi = (sc[:, 4:] & 15) | ((m[:, 4:] & 15) << 4)
    return torch.cat([lo, hi], dim=1).to(torch.uint8)


def _scales_q3(sc: Tensor) -> Tensor:
    """Sixteen signed 6-bit scales of q3_k (stored + 32) into 12 bytes.

    Low nibbles: scale j < 8 in byte j, j >= 8 in the high nibble of byte j - 8;
    top 2 bits: byte 8 + j % 4 at bit 2 * (j // 4).
    """
    s = (sc.reshape(-1, 16) + 32) & 63
    low = _combine((s & 15).reshape(-1, 1, 2, 8), (1, 2, 8), 4)
    high = _combine((s >> 4).reshape(-1, 1, 4, 4), (1, 4, 4), 2)
    return torch.cat([low, high], dim=1)


def _super_parts(codes: Tensor, qtype: str, sc: Tensor, nsub: int) -> tuple[Tensor, Tensor]:
    _check(codes, qtype)
    return _blocks(codes, QK_K), sc.reshape(-1, nsub).to(torch.int32)


def pack_q2_k(codes: Tensor, sc: Tensor, m: Tensor, d: Tensor, dmin: Tensor) -> Tensor:
    c, s = _super_parts(codes, "q2_k", sc, 16)
    mm = m.reshape(-1, 16).to(torch.int32)
    scales = _combine(torch.stack([s, mm], dim=-1).reshape(-1, 16, 2, 1), (16, 2, 1), 4)
    qs = _combine(c, (2, 4, 32), 2)
    return _rows([scales, qs, _half_bytes(d), _half_bytes(dmin)], codes.shape[0])


def pack_q3_k(codes: Tensor, sc: Tensor, d: Tensor) -> Tensor:
    c, s = _super_parts(codes, "q3_k", sc, 16)
    hmask = _combine(c >> 2, (1, 8, 32), 1)
    qs = _combine(c & 3, (2, 4, 32), 2)
    return _rows([hmask, qs, _scales_q3(s), _half_bytes(d)], codes.shape[0])


def pack_q4_k(codes: Tensor, sc: Tensor, m: Tensor, d: Tensor, dmin: Tensor) -> Tensor:
    c, s = _super_parts(codes, "q4_k", sc, 8)
    scales = _scales_6bit(s, m.reshape(-1, 8).to(torch.int32))
    return _rows([_half_bytes(d), _half_bytes(dmin), scales, _combine(c, (4, 2, 32), 4)], codes.shape[0])


def pack_q5_k(codes: Tensor, sc: Tensor, m: Tensor, d: Tensor, dmin: Tensor) -> Tensor:
    c, s = _super_parts(codes, "q5_k", sc, 8)
    scales = _scales_6bit(s, m.reshape(-1, 8).to(torch.int32))
    qh = _combine(c >> 4, (1, 8, 32), 1)
    qs = _combine(c & 15, (4, 2, 32), 4)
    return _rows([_half_bytes(d), _half_bytes(dmin), scales, qh, qs], codes.shape[0])


def pack_q6_k(codes: Tensor, sc: Tensor, d: Tensor) -> Tensor:
    c, s = _super_parts(codes, "q6_k", sc, 16)
    ql = _combine(c & 15, (2, 2, 64), 4)
    qh = _combine(c >> 4, (2, 4, 32), 2)
    scales = s.to(torch.int8).view(torch.uint8)
    return _rows([ql, qh, scales, _half_bytes(d)], codes.shape[0])


PACKERS: dict[str, Callable[..., Tensor]] = {
    "q4_0": pack_q4_0, "q4_1": pack_q4_1, "q5_0": pack_q5_0, "q5_1": pack_q5_1, "q8_0": pack_q8_0,
    "iq4_nl": pack_iq4_nl, "q2_k": pack_q2_k, "q3_k": pack_q3_k, "q4_k": pack_q4_k, "q5_k": pack_q5_k,
    "q6_k": pack_q6_k,
}


def pack(qtype: str, codes: Tensor, **parts: Tensor) -> Tensor:
    """Pack one tensor as ggml ``qtype``; ``parts`` are the keyword inputs of ``pack_<qtype>``.

    >>> pack("q8_0", torch.full((1, 32), 128, dtype=torch.uint8), d=torch.ones(1, 1)).shape
    torch.Size([1, 34])
    """
    if qtype not in PACKERS:
        raise ValueError(f"unknown ggml type {qtype!r}; valid choices: {', '.join(PACKERS)}")
    return PACKERS[qtype](codes, **parts)


def ggml_quant_type(qtype: str):  # -> gguf.GGMLQuantizationType
    """The ``gguf`` package's enum member of ``qtype`` (imported lazily: gguf is optional here)."""
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('writing or reading GGUF needs the gguf package: pip install "ar-export"') from e
    name = {"f32": "F32", "f16": "F16", "bf16": "BF16"}.get(qtype, qtype.upper())
    return gguf.GGMLQuantizationType[name]
