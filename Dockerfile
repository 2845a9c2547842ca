# One image for every twin service (conductor, generator, balancer, devices, planner) and for the
# one-shot `run`: the project and its locked dependencies (uv.lock, without the dev group).
# Built by compose.yaml (`docker compose up --build`); the entry point is the `llmtwin` command.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG UV_VERSION=0.13.8
ENV UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /app
# Dependencies first, so that editing the code does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY llmtwin ./llmtwin
COPY proto ./proto
COPY services ./services
RUN uv sync --frozen --no-dev
ENV PATH=/app/.venv/bin:$PATH

RUN useradd --create-home --uid 10001 twin && mkdir -p /out && chown twin /out
USER twin
ENTRYPOINT ["llmtwin"]
CMD ["--help"]
