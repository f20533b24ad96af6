#!/usr/bin/env bash
# Every GPU check of the project in one go, for a session that has a CUDA machine for a few
# minutes: the CUDA-marked tests, then the GPU figures of docs/benchmarks.md. Each part writes
# its own log under OUTDIR as it goes (a part that runs out of time loses only itself).
#
#   benchmarks/gpu_checks.sh OUTDIR [PYTHON]
#
# Needs the project importable (pip install -e . or PYTHONPATH), its dependencies, and the CoNLL
# files at ../shared/datasets (the benchmarks' default). No model weights: the backbones here are
# random e5-small- and XLM-R-large-shaped BERTs with the real tokenizer (glode.testing), which
# time the same as trained ones. Each part has a time cap (seconds, below) so that the whole
# script ends within about 10 minutes on an H100/H200; GLODE_GPU_CAP_SCALE multiplies the caps.
set -u
out=${1:?usage: benchmarks/gpu_checks.sh OUTDIR [PYTHON]}
py=${2:-python}
scale=${GLODE_GPU_CAP_SCALE:-1}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

part() {  # part NAME CAP COMMAND...: run for at most CAP x scale s, log to OUTDIR/NAME.log, never stop the script
  local name=$1 cap
  cap=$(awk -v c="$2" -v s="$scale" 'BEGIN { printf "%d", c * s }')
  shift 2
  echo "=== $name: $*" | tee -a "$out/summary.txt"
  local start=$SECONDS
  timeout "$cap" "$@" >"$out/$name.log" 2>&1
  echo "=== $name: exit $? after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1
"$py" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" >>"$out/gpu.txt" 2>&1

part tests 150 "$py" -m pytest -q -m gpu -p no:cacheprovider tests/test_train_target.py tests/test_denoise.py tests/test_bench_gpu.py
part bench_gpu 100 "$py" benchmarks/bench_gpu.py --shape large --json
backbones=$(mktemp -d)
"$py" -c "
import sys
from glode.testing import build_tiny_backbone
build_tiny_backbone(sys.argv[1] + '/e5', hidden_size=384, num_hidden_layers=12, num_attention_heads=12, intermediate_size=1536)
build_tiny_backbone(sys.argv[1] + '/large', hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
" "$backbones" >"$out/backbones.log" 2>&1
part target_step_e5 110 "$py" benchmarks/bench_target_step.py --backbone "$backbones/e5" --device cuda --precision bf16 --batch-size 32 --repeats 5 --warmup 2
part target_step_large 110 "$py" benchmarks/bench_target_step.py --backbone "$backbones/large" --device cuda --precision bf16 --batch-size 32 --top-layers 8 --repeats 5 --warmup 2
rm -rf "$backbones"
part bench_denoise 60 "$py" benchmarks/bench_denoise.py --device cuda --backends torch --repeats 5
part knn_chunks 60 "$py" benchmarks/bench_knn_chunks.py
