# One image for the four services; pick one with the command, e.g.
#   docker run funnel python -m lead_intake serve      (or: migrate)
# Build: docker build -t funnel:0.1.0 .

# Pinned by digest (the tag moves with every rebuild upstream); bump tag and digest together.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

# -- build: install the workspace packages (not editable) into one virtualenv -----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/funnel
COPY constraints.txt ./
COPY libs/contracts libs/contracts
COPY libs/servicekit libs/servicekit
COPY services services
# constraints.txt pins every third-party version the tests ran with; pip compiles the
# bytecode here, so the read-only root filesystem at run time needs no .pyc writes.
RUN /opt/funnel/bin/pip install -c constraints.txt \
        ./libs/contracts ./libs/servicekit \
        ./services/lead-intake ./services/stage-tracker ./services/notifier ./services/reporting \
 && /opt/funnel/bin/pip uninstall -y pip setuptools wheel

# -- run: the slim base, the virtualenv, a non-root user; no compilers, no package managers ---
FROM ${PYTHON_IMAGE} AS run
RUN groupadd --system --gid 10001 funnel \
 && useradd --system --uid 10001 --gid funnel --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin funnel \
 && rm -rf /root/.cache
COPY --from=build /opt/funnel /opt/funnel
ENV PATH=/opt/funnel/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FUNNEL_HTTP_HOST=0.0.0.0
USER 10001:10001
WORKDIR /tmp
# Python is PID 1: uvicorn handles SIGTERM itself and drains the loops (FUNNEL_DRAIN_SECONDS).
STOPSIGNAL SIGTERM
EXPOSE 8001 8002 8003 8004
CMD ["python", "-m", "lead_intake", "serve"]
