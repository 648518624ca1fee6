# The gateway image. Two stages: the build stage makes a virtualenv from the lock file,
# the runtime stage carries only that virtualenv and the app, and runs as a numeric
# non-root UID with a read-only root filesystem (mount a writable /tmp).
#
# BASE_IMAGE is the official slim Python image by default; offline it is the Debian
# bookworm + python3 image the harness builds (same Python 3.11, same paths per base).
# Wheels come from ./wheelhouse (filled by `pip download` from requirements.lock, see
# harness/build/app_image.py) so the build itself needs no network and installs by hash.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /build
COPY requirements.lock ./
COPY wheelhouse/ ./wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links ./wheelhouse \
      --require-hashes --only-binary=:all: -r requirements.lock
COPY app/ /opt/gateway/app/
# Compile, and fail the build here if a runtime import (the gevent worker's too) is missing.
RUN /opt/venv/bin/python -m compileall -q /opt/gateway/app \
 && PYTHONPATH=/opt/gateway /opt/venv/bin/python -c "import app.server, gunicorn.workers.ggevent"

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=5000
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/gateway /opt/gateway
WORKDIR /opt/gateway
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["python", "-m", "app"]
