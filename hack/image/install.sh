#!/bin/sh
# Installs mcs into the image's root filesystem: run as root INSIDE it (chroot from
# hack/build-image.sh, or a RUN step of the Dockerfile), with the wheels in /wheels
# (mcs and its dependencies, plus pip's own wheel to run the install without putting
# pip in the image). Both builds run this same script, so they hold the same files.
set -eu
python3 -m venv --without-pip /opt/mcs
pip_wheel=$(ls /wheels/pip-*.whl)
PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  /opt/mcs/bin/python "$pip_wheel/pip" install --no-index --find-links /wheels --no-compile \
  --only-binary :all: mcs-controller
# Bytecode now, so a read-only root filesystem costs nothing at start-up.
/opt/mcs/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/mcs/lib
ln -s /opt/mcs/bin/mcs /usr/local/bin/mcs
ln -s /opt/mcs/bin/kubectl-mcs /usr/local/bin/kubectl-mcs
# The unprivileged user (distroless's "nonroot" id), written directly: no passwd package.
echo "mcs:x:65532:65532:mcs:/nonexistent:/usr/sbin/nologin" >> /etc/passwd
echo "mcs:x:65532:" >> /etc/group
# The local clusterset (`mcs mesh`) is test and demo tooling, never in the image.
rm -rf /opt/mcs/lib/python3*/site-packages/mcs_mesh
# Nothing the controller needs at run time.
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/* \
  /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /tmp/* /root/.cache
