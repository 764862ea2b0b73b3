# meterstream: the worker, the Stripe sink, topic admin and the demo load generator in
# one image (the package with its `all` extra). The entry point is the `meterstream`
# command (streams.cli); the compose file picks the subcommand. Python modules run with
# `--entrypoint python`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY streams ./streams
# A C compiler for the build only: setup.py compiles the core's hot modules with mypyc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install ".[all]" \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin meterstream \
    && mkdir -p /var/lib/meterstream \
    && chown meterstream /var/lib/meterstream

USER meterstream
ENV METERSTREAM_WORKER__STATE_DIR=/var/lib/meterstream/state \
    METERSTREAM_WORKER__WEB_HOST=0.0.0.0
VOLUME ["/var/lib/meterstream"]
EXPOSE 6066 6067
ENTRYPOINT ["meterstream"]
CMD ["--help"]
