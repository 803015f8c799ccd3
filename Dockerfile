# syntax=docker/dockerfile:1
# The coolmesh agent as a container image, for the Helm chart
# (deploy/helm/coolmesh) and deploy/kubernetes/:
#
#   docker build -t coolmesh:0.1.0 \
#     --build-arg COOLMESH_REVISION="$(git rev-parse --short=12 HEAD)" \
#     --build-arg COOLMESH_BRANCH="$(git rev-parse --abbrev-ref HEAD)" \
#     --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" .
#
# Two stages: Rust builds the release binary, and a slim Debian of the same
# release runs it (same glibc; dbus-send for the shutdown through the host's
# logind). The image runs as an unprivileged user; the Helm chart runs it as
# root in the container by default (hostPath state, logind power-off:
# values.yaml, securityContext) with no capability but NET_RAW.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# build.rs reads the revision from git; the context has no .git
# (.dockerignore), so the build arguments carry it.
ARG COOLMESH_REVISION=unknown
ARG COOLMESH_BRANCH=unknown
ARG SOURCE_DATE_EPOCH
COPY . .
# Line tables are for the developers' builds (profile.release debug = 1);
# the image's binary is stripped as the Debian package's is.
RUN CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked -p coolmesh --bin coolmesh \
 && ./target/release/coolmesh --version

FROM debian:bookworm-slim
# dbus-send (package dbus-bin): the chart's shutdown command asks the host's
# logind to power off. Unpinned versions: the base image's release pins them,
# and security updates should come with a rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends dbus-bin ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/coolmesh /usr/bin/coolmesh
# The agent's state directory, owned by the image's user for a container run
# without a hostPath volume.
RUN install -d -o 65532 -g 65532 -m 0700 /var/lib/coolmesh
USER 65532:65532
# HTTP (metrics, API, status page) and the cluster's libp2p port.
EXPOSE 10027/tcp 9877/tcp
ENTRYPOINT ["/usr/bin/coolmesh"]
CMD ["agent", "--config", "/etc/coolmesh/coolmesh.toml"]
