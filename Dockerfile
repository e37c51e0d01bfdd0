# The workspace image. With EXECUTE_CODE (a folder, script, VCS URL, ML Lab
# key or URL) it serves that code on port 8091 under the runner's supervision;
# without it, it opens JupyterLab (with a terminal) on port 8080.
#
#   podman build --format docker -t workspace .   (tests/container/build.sh does it here)
#   docker run -p 8091:8091 --env EXECUTE_CODE=git+https://host/org/repo.git workspace
#
# Two Pythons, so that a user's pins never break the runner: the runner (and
# JupyterLab) live in /opt/runner; user code, its requirements and the
# notebook kernel use /opt/service, which is `python` on PATH.
#
# pip and the runner's downloads trust the system's certificate store
# (REQUESTS_CA_BUNDLE), so a CA added with update-ca-certificates, e.g. a
# company proxy's, works for requirements and code downloads alike.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV LANG=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RUNNER_VENV=/opt/runner \
    RUNNER_PYTHON=/opt/service/bin/python \
    RESOURCES_PATH=/resources \
    WORKSPACE_HOME=/workspace \
    JUPYTER_PATH=/usr/local/share/jupyter \
    SHELL=/bin/bash \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

# A wrapper for Breezy, which also answers as `bzr` (made below).
COPY workspace_image/brz /usr/local/bin/brz

# Debian's packages follow the base's release; pinning them would break the
# build at every point release, so DL3008 is ignored on purpose. Like the slim
# images, leave out manuals, docs and translations, and keep no .deb files.
# hadolint ignore=DL3008
RUN printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' \
      > /etc/dpkg/dpkg.cfg.d/90-workspace-slim \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates openssh-client \
      git mercurial subversion brz tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && chmod 755 /usr/local/bin/brz \
 && ln -s brz /usr/local/bin/bzr \
 && git config --system --add safe.directory '*' \
 && groupadd --gid 1000 workspace \
 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash workspace \
 && install -d -o 1000 -g 1000 /workspace

# The service Python, owned by the user so that `pip install` works in the
# workspace and in `RUN ... --requirements-only` of derived images; ipykernel
# makes it the notebooks' Python too.
RUN python3 -m venv /opt/service \
 && /opt/service/bin/pip install ipykernel==7.4.0 \
 && chown -R 1000:1000 /opt/service

# The runner's venv: JupyterLab first (changes least), then the runner's
# dependencies from setup.cfg alone (only the package folders are missing, so
# this builds an empty distribution), then the code: a code change reuses
# every layer above.
RUN python3 -m venv /opt/runner \
 && /opt/runner/bin/pip install jupyterlab==4.6.6
COPY setup.cfg pyproject.toml /src/
RUN /opt/runner/bin/pip install /src
COPY runner /src/runner
RUN /opt/runner/bin/pip install --no-deps --force-reinstall /src \
 && rm -rf /src \
 && ln -s /opt/runner/bin/execute-code /usr/local/bin/execute-code

# The service toolkit (`workspace_service`, and AI for Earth's module names) in
# the service Python, so code run by the image imports it without a
# requirements line. Installed as the venv's owner, so that a user's
# `pip install` may still upgrade its dependencies (Flask, waitress). With the
# Redis extra, so that replicas share tasks with REDIS_URL set (deploy/).
COPY --chown=1000:1000 toolkit /tmp/toolkit
USER 1000:1000
RUN /opt/service/bin/pip install "/tmp/toolkit[redis,prometheus,openapi]" \
 && rm -rf /tmp/toolkit
USER 0:0

COPY resources /resources
COPY workspace_image/healthcheck.py /resources/healthcheck.py
COPY workspace_image/jupyter_server_config.py /etc/jupyter/jupyter_server_config.py
COPY workspace_image/kernels /usr/local/share/jupyter/kernels

ENV PATH=/opt/service/bin:$PATH
USER 1000:1000
WORKDIR /workspace
EXPOSE 8091 8080

# Exec form (no shell): the script reads $PORT itself and also accepts the
# workspace's JupyterLab when no service runs. The system's Python, isolated:
# nothing a user installs can break the check.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["/usr/bin/python3", "-I", "/resources/healthcheck.py"]

# tini is PID 1: it forwards SIGTERM to the runner and reaps zombies.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/runner/bin/python", "/resources/docker-entrypoint.py"]
