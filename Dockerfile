# One image, three commands (see README "Services"): bin/start-api, bin/start-worker, bin/start-beat.
# Builder: uv installs the locked dependencies into /app/.venv; the runtime stage copies only that.

FROM python:3.12-slim AS builder
ENV UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# Build tools for a source build of pycurl, should its bundled-libcurl wheel be unavailable.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends gcc libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
COPY . .

FROM python:3.12-slim
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app
WORKDIR /app
COPY --from=builder --chown=app:app /app /app
ENV PATH=/app/.venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=api.settings.production \
    PYTHONUNBUFFERED=1
USER app
EXPOSE 8000
CMD ["bin/start-api"]
