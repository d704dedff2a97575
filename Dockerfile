# One image, three commands (README "Services"): bin/start-api (default), bin/start-worker, bin/start-beat.
# builder: uv installs the locked runtime dependencies into /app/.venv (compilers live only here).
# runtime: python:3.12-slim with that venv and the code, run as a non-root user.
# Lint: `make lint-infra` (hadolint). Build context: .dockerignore (an allowlist).

FROM python:3.12-slim AS builder
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.12 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# Compilers and headers for a source build of pycurl, should its manylinux wheel (libcurl bundled,
# locked for x86_64 and aarch64) ever be missing. DL3008 (pin apt versions) is ignored on purpose:
# Debian replaces package versions in place with security updates, so a pin breaks the build within
# weeks, and nothing from this stage but /app/.venv reaches the image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install --yes --no-install-recommends gcc libc6-dev libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock ./
# Runtime dependencies only: no dev or infra group (the default groups), no project install.
RUN uv sync --locked --no-default-groups --no-install-project

FROM python:3.12-slim
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
# Owned by root and read-only to the app user: the process cannot change its own code or libraries.
COPY --from=builder /app/.venv /app/.venv
COPY . .
ENV PATH=/app/.venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=api.settings.production \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Bytecode for the code (the venv's was compiled by uv), then a smoke test that fails the build
# rather than the deployment: pycurl loads its libcurl, and queues.yml passes the topology checks.
# Then the admin's static files into /app/var/static (STATIC_ROOT), hashed and compressed, which
# whitenoise serves (api/settings/collectstatic.py: no database or secret needed at build time).
RUN python -m compileall -q api workers core lambdas devstack \
 && python -c "import pycurl, celery, django; from core.topology import load_topology; load_topology()" \
 && DJANGO_SETTINGS_MODULE=api.settings.collectstatic python manage.py collectstatic --noinput --verbosity 0
# Numeric, so the platform can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
CMD ["bin/start-api"]
