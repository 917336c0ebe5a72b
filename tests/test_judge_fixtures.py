"""Shared helpers for the judge tests (no tests here): a tiny word-level tokenizer, a 2-layer random Llama, fake generations."""
from __future__ import annotations

from pathlib import Path

WORDS = ("A B neither Verdict Grade Score Fail Pass Excellent safe unsafe 1 2 3 4 5 6 : the a is good bad answer "
         "request how do i cook rice water boil salt pot minutes yes no please explain why because it". split())


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, "</s>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>")


def tiny_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=2, pad_token_id=1, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


def save_tiny_base(path: Path, seed: int = 0) -> Path:
    tok = tiny_tokenizer()
    model = tiny_model(len(tok), seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


PROMPTS = {
    "p1": "how do i cook rice",
    "p2": "explain why water boil",
    "p3": "how do i boil a pot",
    "p4": "please explain salt",
}


def generation_rows(system: str = "epoch-2", ckpt_path: str | None = None, sensitive: tuple[str, ...] = ("p4",)):
    """Rows as generate.py writes them: the system answers at length, the base model tersely."""
    rows = []
    for label, path in (("base", None), (system, ckpt_path)):
        for pid, text in PROMPTS.items():
            resp = "yes" if label == "base" else f"the answer is good because it is {text}"
            rows.append({"checkpoint": label, "checkpoint_path": path, "prompt_id": pid, "source": "demo",
                         "tags": ["sensitive"] if pid in sensitive else [], "sample": 0,
                         "messages": [{"role": "user", "content": text}], "response": resp,
                         "prompt_tokens": len(text.split()), "response_tokens": len(resp.split()),
                         "stopped_at_eot": True})
    return rows
