# The streaming worker image: the torch-free runtime only (no `train` extra).
#   docker build -t nextbehavior .
#   docker run --rm nextbehavior --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY model ./model
COPY export ./export
RUN pip install . \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /state /bundles \
    && chown app /state

USER app
ENV NBP_STATE_DIR=/state \
    NBP_WEB_HOST=0.0.0.0 \
    NBP_PROVIDERS=CPUExecutionProvider
EXPOSE 6066
ENTRYPOINT ["nextbehavior"]
CMD ["--help"]
