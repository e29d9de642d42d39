# The mcs controller image for people with Docker (BuildKit): `docker build -t mcs:0.2.0 .`
# (the Python distribution inside is mcs-controller; `make release-check` checks versions)
# Without Docker, `make image` builds the same image (hack/build-image.sh: mmdebstrap +
# umoci) into an OCI archive. Both start from Debian bookworm's python3 (3.11) and run
# the same hack/image/install.sh, so they hold the same files: mcs in a virtualenv at
# /opt/mcs (no pip, no mesh extra), the CRDs in /usr/share/mcs/crds, user 65532.
# Runs as that unprivileged user and writes nothing (the Deployment in manifests/
# makes the root filesystem read-only; /tmp is an emptyDir).

FROM debian:bookworm-slim AS wheels
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the wheel is built from (see .dockerignore).
COPY pyproject.toml README.md LICENSE ./
COPY mcs ./mcs
# mcs/manifests links ../manifests: the RBAC kubectl mcs join applies, as package data
COPY manifests ./manifests
RUN python3 -m venv /build && /build/bin/pip install --quiet --upgrade pip \
    && /build/bin/pip wheel --quiet --wheel-dir /wheels . pip

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=bind,source=hack/image/install.sh,target=/install.sh \
    sh /install.sh
# The CRDs of this release, for installing or comparing from the image
# (e.g. `docker run --rm --entrypoint cat mcs:0.2.0 /usr/share/mcs/crds/serviceimports.yaml`).
COPY crds /usr/share/mcs/crds
ENV PATH=/opt/mcs/bin:/usr/local/bin:/usr/bin:/bin PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
# 8080: /metrics; 8081: /healthz and /readyz
EXPOSE 8080 8081
ENTRYPOINT ["mcs"]
CMD ["run"]
