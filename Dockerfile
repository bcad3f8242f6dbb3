# syntax=docker/dockerfile:1
# The model-monitoring worker. Build:  docker build -t model-monitoring .
# Run:    docker run --rm -p 6066:6066 -e KAFKA_BOOTSTRAP_SERVERS=kafka:9092 \
#           -e MODEL_MONITORING_BROKER_PROFILE=kafka model-monitoring
# docker-compose.kafka.yml runs it next to Apache Kafka, Prometheus and Grafana.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv with the dependencies, then the project itself ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# faust-streaming publishes x86_64 wheels only: elsewhere (arm64, e.g. Apple silicon) pip builds
# it from source, which needs a compiler. This stage is discarded, so the runtime image stays slim.
RUN if [ "$(dpkg --print-architecture)" != "amd64" ]; then \
        apt-get update && apt-get install -y --no-install-recommends build-essential \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY . .
RUN pip install --no-deps . \
    && python -c "import model_monitoring.commands.cli, model_monitoring.commands.worker, model_monitoring.agents.web"

# ---- runtime: the virtualenv only, run by an unprivileged user ------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="model-monitoring" \
      org.opencontainers.image.description="Event-sourced drift and performance monitoring (Faust + Kafka)"
RUN groupadd --system --gid 10001 monitor \
    && useradd --system --uid 10001 --gid monitor --home-dir /home/monitor --create-home \
               --shell /usr/sbin/nologin monitor \
    && mkdir -p /var/lib/model-monitoring \
    && chown monitor:monitor /var/lib/model-monitoring
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_MONITORING_WEB_HOST=0.0.0.0 \
    MODEL_MONITORING_WEB_PORT=6066 \
    MODEL_MONITORING_DATA_DIR=/var/lib/model-monitoring \
    MODEL_MONITORING_BROKER_PROFILE=kafka
USER monitor
WORKDIR /home/monitor
# RocksDB table stores (a cache of the changelog topics: losing it costs a recovery, not data)
VOLUME ["/var/lib/model-monitoring"]
EXPOSE 6066
# /healthz answers as soon as the web server is up; readiness (/readyz) is for orchestrators.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('MODEL_MONITORING_WEB_PORT', '6066'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["model-monitoring"]
CMD ["worker"]
