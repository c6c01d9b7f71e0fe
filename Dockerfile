# syntax=docker/dockerfile:1
# The issueflow image: the API, every stage worker, Flower and the migration run from it.
#
#   docker build -t issueflow .
#
# The build stage installs the package into a virtual environment (the tagger's model file
# ships inside the package: pipelines/providers/models/*, package data in pyproject.toml).
# The runtime stage gets only that environment: no compiler, no pip cache, no source tree,
# and it runs as a non-root user. Every process starts in exec form (no shell in between),
# so the process is PID 1 and SIGTERM reaches uvicorn or Celery directly.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/issueflow
WORKDIR /src
COPY pyproject.toml ./
# The dependencies first, from pyproject.toml alone: a code change reuses this layer.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && /opt/issueflow/bin/pip install -r /tmp/requirements.txt
COPY README.md ./
COPY app ./app
COPY pipelines ./pipelines
# Then the package itself, a regular (not editable) install: its code, its migrations and
# the model file land in the environment's site-packages. The check at the end fails the
# build if the model is missing or does not load.
RUN /opt/issueflow/bin/pip install --no-deps . \
    && /opt/issueflow/bin/python -c "from pipelines.providers.classifier import get_model; get_model()"

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/issueflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WORKER_HEARTBEAT_FILE=/tmp/issueflow-worker.heartbeat
RUN groupadd --system --gid 10001 issueflow \
    && useradd --system --uid 10001 --gid issueflow --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin issueflow
COPY --from=build /opt/issueflow /opt/issueflow
WORKDIR /app
# `alembic upgrade head` from /app migrates DATABASE_URL with the migrations installed in
# the package (script_location = app:migrations).
COPY deploy/alembic.ini ./alembic.ini
USER 10001:10001
EXPOSE 8000 5555
# The API by default; compose and the Kubernetes manifests give each worker, Flower and the
# migration their own command, in exec form too.
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
