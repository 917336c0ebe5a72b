"""Test doubles and fixtures' builders shared by several test files (tests import this, never each other):
tiny random models and tokenizers saved as local folders, config overrides for seconds-long runs, fake
generation rows, and a scripted judge. No hub access."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lima_repro.judging import Completion, Judge

FAMILIES = ("llama", "gemma3", "qwen2", "gpt2")


def make_tokenizer():
    """Byte-level BPE with no merges: one token per byte, ids fixed by sorting the alphabet."""
    specials = ["<pad>", "<s>", "</s>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(specials + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_config(family: str, vocab_size: int):
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=32, n_layer=3, n_head=4, n_positions=512, **common)
    sizes = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        **common,
    )
    if family == "gemma3":
        return AutoConfig.for_model(
            "gemma3_text",
            head_dim=8,
            sliding_window=16,
            query_pre_attn_scalar=8,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            **sizes,
        )
    return AutoConfig.for_model(family, **sizes)


def save_tiny_model(folder: Path, family: str = "llama", seed: int = 0) -> Path:
    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, len(tokenizer)))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


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
        "train.precision": "fp32",  # pinned losses must not depend on whether this CPU has bf16 units
        "generate.precision": "fp32",
        "generate.max_new_tokens": 24,
        "generate.max_prompts": 3,
        "generate.include_base": True,
        "generate.checkpoints": "last",
    }
    base.update(extra)
    return base


WORDS = (
    "A B neither Verdict Grade Score Fail Pass Excellent safe unsafe 1 2 3 4 5 6 : the a is good bad answer "
    "request how do i cook rice water boil salt pot minutes yes no please explain why because it".split()
)


def tiny_tokenizer():
    vocab = {"[UNK]": 0, "[PAD]": 1, "</s>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>")


def tiny_model(vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=2,
        pad_token_id=1,
        bos_token_id=None,
    )
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
            rows.append(
                {
                    "checkpoint": label,
                    "checkpoint_path": path,
                    "prompt_id": pid,
                    "source": "demo",
                    "tags": ["sensitive"] if pid in sensitive else [],
                    "sample": 0,
                    "messages": [{"role": "user", "content": text}],
                    "response": resp,
                    "prompt_tokens": len(text.split()),
                    "response_tokens": len(resp.split()),
                    "stopped_at_eot": True,
                }
            )
    return rows


class ScriptJudge(Judge):
    """Prefers the longer answer, or always says A (`biased`); can crash after `crash_after` completions."""

    kind = "script"

    def __init__(self, biased=False, crash_after=None):
        self.biased, self.crash_after, self.sent = biased, crash_after, 0

    def identity(self):
        return {"kind": self.kind, "model": "script", "biased": self.biased}

    def complete_many(self, requests):
        for i, r in enumerate(requests):
            if self.crash_after is not None and self.sent >= self.crash_after:
                raise KeyboardInterrupt("killed")
            self.sent += 1
            p = r.prompt
            if r.protocol == "pairwise":
                a, b = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]\n(.*?)\n\n", p, re.S).groups()
                text = "Verdict: A" if self.biased or len(a) > len(b) else "Verdict: B"
            else:
                long = "because it" in p
                text = {
                    "absolute": f"Grade: {'Excellent' if long else 'Fail'}",
                    "likert": f"Reasoning first.\nScore: {5 if long else 2}",
                    "safety": "Verdict: safe",
                    "dialogue": "Grade: Pass",
                }[r.protocol]
            yield i, Completion(text=text, usage={"prompt_tokens": 10, "completion_tokens": 2}, cost=0.001)


def chat_completion(model: str, text: str, prompt_tokens: int = 100, completion_tokens: int = 10) -> dict:
    """An OpenAI chat-completions response body holding `text`."""
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ChatServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 (a real socket, a thread per request). `respond(body,
    headers)` gets each POST's JSON body and request headers and returns (status, payload, extra headers): a
    payload that is bytes is sent as is (text/plain unless the extra headers name a Content-Type), anything
    else as JSON."""

    def __init__(self, respond: Callable[[dict, dict], tuple[int, object, dict | None]]):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code, payload, extra = respond(body, self.headers)
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                extra = dict(extra or {})
                ctype = extra.pop("Content-Type", "text/plain" if isinstance(payload, bytes) else "application/json")
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(raw)))
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
