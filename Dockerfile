# syntax=docker/dockerfile:1
# The intentflow image: one image for the worker, the API and the one-shot
# commands (migrate, simulate). docker-compose.yml picks the command.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, pinned by constraints.txt, so a source change does not
# reinstall them (this layer changes only with pyproject.toml or constraints.txt).
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself (.dockerignore keeps tests, venvs and local data out).
COPY . .
RUN pip install --no-deps . \
    && intentflow --help > /dev/null

# Not root: a fixed uid owning only the state directory.
RUN groupadd --system --gid 10001 intentflow \
    && useradd --system --uid 10001 --gid intentflow --home-dir /var/lib/intentflow \
        --no-create-home --shell /usr/sbin/nologin intentflow \
    && mkdir -p /var/lib/intentflow \
    && chown intentflow:intentflow /var/lib/intentflow
USER intentflow:intentflow

# Worker state (RocksDB tables) lives here; each container gets its own volume.
ENV INTENTFLOW_DATA_DIR=/var/lib/intentflow
VOLUME ["/var/lib/intentflow"]

EXPOSE 8000
CMD ["intentflow", "--help"]
