"""Shared fixtures: a deterministic byte-level tokenizer and tiny random models of several families, saved as
ordinary local folders (so they also exercise the 'local folder' model path). No hub access."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAMILIES = ("llama", "gemma3", "qwen2", "gpt2")


def make_tokenizer():
    """Byte-level BPE with no merges: one token per byte, ids fixed by sorting the alphabet."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(specials + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_config(family: str, vocab_size: int):
    from transformers import AutoConfig

    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=32, n_layer=3, n_head=4, n_positions=512, **common)
    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512, **common)
    if family == "gemma3":
        return AutoConfig.for_model("gemma3_text", head_dim=8, sliding_window=16, query_pre_attn_scalar=8,
                                    layer_types=["sliding_attention", "sliding_attention", "full_attention"], **sizes)
    return AutoConfig.for_model(family, **sizes)


def save_tiny_model(folder: Path, family: str = "llama", seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, len(tokenizer)))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {f: save_tiny_model(root / f, f) for f in FAMILIES}


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_dirs) -> Path:
    return tiny_model_dirs["llama"]


@pytest.fixture
def tokenizer():
    return make_tokenizer()


def tiny_overrides(model_dir: Path, run_dir: Path, **extra) -> dict:
    """Overrides of the `paper` profile for a tiny model on the hand-written demo data: seconds on a CPU."""
    base = {
        "curate.train_files": ["demo:train.jsonl"],
        "curate.dev_files": ["demo:dev.jsonl"],
        "curate.test_files": ["demo:test.jsonl"],
        "model.name": str(model_dir),
        "run_dir": str(run_dir),
        "train.epochs": 2,
        "train.batch_size": 8,
        "train.micro_batch_size": 4,
        "train.max_length": 192,
        "train.lr": 1e-3,
        "train.lr_end": 1e-4,
        "train.residual_dropout": 0.2,
        "train.packing": False,
        "generate.max_new_tokens": 24,
        "generate.max_prompts": 3,
        "generate.include_base": True,
        "generate.checkpoints": "last",
    }
    base.update(extra)
    return base
