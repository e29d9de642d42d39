# The mcs controller image: `docker build -t mcs:0.1.0 .`
# Runs as an unprivileged user and needs no writable path except /tmp (the Deployment
# in manifests/ mounts an emptyDir there and makes the root filesystem read-only).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore).
COPY pyproject.toml README.md ./
COPY mcs ./mcs
RUN pip install --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /install /usr/local
# The CRDs of this release, for installing or comparing from the image
# (e.g. `docker run --rm --entrypoint cat mcs:0.1.0 /usr/share/mcs/crds/serviceimports.yaml`).
COPY crds /usr/share/mcs/crds
RUN groupadd --system --gid 65532 mcs \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mcs
USER 65532:65532
# 8080: /metrics; 8081: /healthz and /readyz
EXPOSE 8080 8081
ENTRYPOINT ["mcs"]
CMD ["run"]
