"""ar_kernels.packing: exact bytes of hand-made codes, and round trips for every bit width."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ar_kernels.packing import awq, bitstream, compressed, fp4, gptq


def _u32(x: int) -> int:
    return x & 0xFFFFFFFF


def _stream_words(values: list[int], bits: int) -> list[int]:
    """Independent model of the layout: one big little-endian integer cut into 32-bit words."""
    big = sum(v << (bits * i) for i, v in enumerate(values))
    nwords = -(-len(values) * bits // 32)
    return [(big >> (32 * k)) & 0xFFFFFFFF for k in range(nwords)]


def test_gptq_4bit_exact_words():
    codes = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8] * 4, [15] * 32], dtype=torch.uint8)
    q = gptq.pack_qweight(codes, 4)
    assert q.shape == (4, 2) and q.dtype == torch.int32
    assert [_u32(int(x)) for x in q[:, 0]] == [0x87654321] * 4
    assert [_u32(int(x)) for x in q[:, 1]] == [0xFFFFFFFF] * 4


def test_gptq_3bit_spans_words():
    values = [i % 8 for i in range(32)]
    q = gptq.pack_qweight(torch.tensor([values], dtype=torch.uint8), 3)
    assert q.shape == (3, 1)
    words = [_u32(int(x)) for x in q[:, 0]]
    assert words == _stream_words(values, 3)
    # value 10 (= 2, binary 010) straddles: bits 30-31 of word 0 hold its low bits, bit 0 of word 1 its high bit
    assert words[0] >> 30 == 2 and words[1] & 1 == 0
    assert words == [0x88FAC688, 0xC688FAC6, 0xFAC688FA]


@pytest.mark.parametrize("bits", [2, 8])
def test_gptq_2_and_8_bits_exact(bits):
    values = [(3 * i + 1) % 2**bits for i in range(32)]
    q = gptq.pack_qweight(torch.tensor([values], dtype=torch.uint8), bits)
    assert [_u32(int(x)) for x in q[:, 0]] == _stream_words(values, bits)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("n", [64, 40])  # whole int32 words per row (byte fast path) or a padded tail
def test_stream_words_whole_bytes(bits, n):
    g = torch.Generator().manual_seed(bits * n)
    codes = torch.randint(0, 2**bits, (3, n), generator=g).to(torch.uint8)
    for layout in (codes, codes.t().contiguous().t()):  # the fast path copes with strided rows
        words = bitstream.pack_rows(layout, bits)
        for row in range(3):
            assert [_u32(int(x)) for x in words[row]] == _stream_words(codes[row].tolist(), bits)
        assert torch.equal(bitstream.unpack_rows(words.t().contiguous().t(), bits, n), codes)


def test_gptq_qzeros_store_zero_minus_one():
    zero = torch.full((8, 2), 8, dtype=torch.int32)  # sym 4-bit: zero 8 is stored as 7
    qz = gptq.pack_qzeros(zero, 4)
    assert qz.shape == (2, 1) and _u32(int(qz[0, 0])) == 0x77777777
    assert torch.equal(gptq.unpack_qzeros(qz, 4, 8), zero)
    assert _u32(int(gptq.pack_qzeros(zero, 4, offset=0)[0, 0])) == 0x88888888


def test_gptq_refuses_zero_point_zero():
    with pytest.raises(ValueError, match="zero-1"):
        gptq.pack_qzeros(torch.zeros(8, 1, dtype=torch.int32), 4)


def test_awq_order():
    v = torch.arange(8, dtype=torch.uint8).reshape(1, 8)
    assert _u32(int(awq.pack(v)[0, 0])) == 0x75316420  # columns 0,2,4,6 in the low nibbles
    assert torch.equal(awq.unpack(awq.pack(v)), v)


def test_fp4_low_nibble_first():
    codes = torch.tensor([[1, 15, 0, 8]], dtype=torch.uint8)
    assert fp4.pack_fp4(codes).tolist() == [[0xF1, 0x80]]
    assert fp4.fp4_to_float(torch.tensor([3, 11, 7])).tolist() == [1.5, -1.5, 6.0]


def test_compressed_matches_gptq_stream_transposed():
    codes = torch.randint(0, 16, (4, 64), dtype=torch.uint8)
    assert torch.equal(compressed.pack_int(codes, 4), gptq.pack_qweight(codes, 4).t())


@pytest.mark.parametrize("bits", range(2, 9))
def test_compressed_matches_compressed_tensors(bits):
    helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    codes = torch.randint(0, 2**bits, (6, 80), dtype=torch.uint8)
    signed = (codes.to(torch.int32) - 2 ** (bits - 1)).to(torch.int8)
    assert torch.equal(compressed.pack_int(codes, bits), helpers.pack_to_int32(signed, bits))
    assert torch.equal(compressed.pack_int(codes, bits, dim=0), helpers.pack_to_int32(signed, bits, packed_dim=0))


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 8), out=st.integers(1, 9), inp=st.integers(1, 100), seed=st.integers(0, 2**16))
def test_round_trips(bits, out, inp, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2**bits, (out, inp), generator=g).to(torch.uint8)
    assert torch.equal(gptq.unpack_qweight(gptq.pack_qweight(codes, bits), bits, inp), codes)
    assert torch.equal(compressed.unpack_int(compressed.pack_int(codes, bits), bits, (out, inp)), codes)
    assert torch.equal(compressed.unpack_int(compressed.pack_int(codes, bits, 0), bits, (out, inp), 0), codes)
    zero = torch.randint(1, 2**bits, (inp, out), generator=g).to(torch.int32)
    assert torch.equal(gptq.unpack_qzeros(gptq.pack_qzeros(zero, bits), bits, inp), zero)


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 9), cols8=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_awq_and_fp4_round_trips(rows, cols8, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randint(0, 16, (rows, cols8 * 8), generator=g).to(torch.uint8)
    assert torch.equal(awq.unpack(awq.pack(v)), v)
    assert torch.equal(fp4.unpack_fp4(fp4.pack_fp4(v)), v)


@pytest.mark.parametrize("bad", [(gptq.pack_qweight, 9), (gptq.pack_qweight, 1)])
def test_bad_bits_name_the_choices(bad):
    fn, bits = bad
    with pytest.raises(ValueError, match="valid bits"):
        fn(torch.zeros(1, 32, dtype=torch.uint8), bits)
