# slotguard: the API server (`slotguard serve`, the default command) or the background worker
# (`slotguard worker`). Build: docker build -t slotguard . — see compose.yaml and the README
# section "Running it for real".

FROM python:3.11-slim-bookworm AS build
# The same uv the README's commands install; the lock file decides every other version.
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --frozen --no-dev --extra mcp --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --extra mcp --no-editable

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /data --create-home slotguard
COPY --from=build /app/.venv /app/.venv
# SQLite by default, in the /data volume; set DATABASE_URL for PostgreSQL.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/slotguard.db \
    SLOTGUARD_HOST=0.0.0.0 \
    SLOTGUARD_PORT=8000
USER slotguard
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# Ready = the database answers and its schema is current. The worker serves no HTTP: compose
# turns this check off for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SLOTGUARD_PORT', '8000'), timeout=4)"]
# serve stops gracefully on SIGTERM (docker stop): in-flight requests finish, the embedded
# worker hands back what it claimed.
STOPSIGNAL SIGTERM
CMD ["slotguard", "serve"]
