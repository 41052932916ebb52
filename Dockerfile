# newsdigest: slim image running `newsdigest run` as a non-root user; the SQLite database lives on a volume.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    NEWSDIGEST_DATABASE_URL=sqlite:////data/newsdigest.db \
    NEWSDIGEST_FEEDS_FILE=/app/feeds.yaml \
    NEWSDIGEST_MODEL_CACHE=/app/models

WORKDIR /app

# CPU-only torch first, from PyTorch's CPU index, so the image does not carry gigabytes of CUDA.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY summarizer ./summarizer
COPY feeds.yaml ./feeds.yaml
RUN pip install . \
    && useradd --system --create-home --uid 10001 newsdigest \
    && mkdir -p /data && chown newsdigest:newsdigest /data \
    && python -m summarizer.onnx_export >/dev/null

USER newsdigest
VOLUME ["/data"]
# Chat tokens come from the environment at run time (never baked into the image):
#   docker run -v newsdigest:/data -e TELEGRAM_BOT_TOKEN=... -e DISCORD_BOT_TOKEN=... newsdigest
CMD ["newsdigest", "run"]
