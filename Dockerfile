# pgactivity: `docker build -t pgactivity .`
#   docker run IMAGE                      -> pgactivity serve --host 0.0.0.0 (needs DATABASE_URL + a JWT key)
#   docker run IMAGE migrate up           -> apply the bundled migrations once, then exit
#   docker run IMAGE token --org ORG      -> mint a token with PGACTIVITY_JWT_SECRET
ARG PYTHON_VERSION=3.12

# ---- builder: build the wheel (it bundles sql/migrations) and install it into a venv
FROM python:${PYTHON_VERSION}-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sql ./sql
COPY src ./src

# The venv gets no pip of its own: the builder's pip installs into it (--python).
RUN python -m venv --without-pip /opt/pgactivity \
    && pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && pip --python /opt/pgactivity/bin/python install /tmp/wheels/pgactivity-*.whl \
    && /opt/pgactivity/bin/pgactivity --help >/dev/null \
    && /opt/pgactivity/bin/python -c "from importlib.resources import files; assert any(files('pgactivity').joinpath('migrations').iterdir())"

# ---- runtime: the venv only, as an unprivileged user
FROM python:${PYTHON_VERSION}-slim

LABEL org.opencontainers.image.title="pgactivity" \
      org.opencontainers.image.description="Stream AI-agent activity from PostgreSQL to web UIs (LISTEN/NOTIFY, SSE, JWT)" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 pgactivity \
    && useradd --system --uid 10001 --gid pgactivity --home-dir /var/lib/pgactivity --create-home \
       --shell /usr/sbin/nologin pgactivity

COPY --from=builder /opt/pgactivity /opt/pgactivity

# PGACTIVITY_DATA_DIR only matters without DATABASE_URL (the embedded development database).
ENV PATH=/opt/pgactivity/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PGACTIVITY_HOST=0.0.0.0 \
    PGACTIVITY_PORT=8000 \
    PGACTIVITY_DATA_DIR=/var/lib/pgactivity

USER 10001:10001
WORKDIR /var/lib/pgactivity
EXPOSE 8000

# No curl in slim images: ask /readyz with the interpreter we already have (non-2xx -> exit 1).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PGACTIVITY_PORT', '8000') + '/readyz', timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["pgactivity"]
CMD ["serve", "--host", "0.0.0.0"]
