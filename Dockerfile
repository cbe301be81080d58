# syntax=docker/dockerfile:1
#
# fleet2mqtt container image: one static binary, Tesla's vehicle CA bundle
# and a configuration for containers, on an empty (scratch) base, running
# as an unprivileged user.
#
# Build for the three targets (BuildKit cross-compiles; no emulation):
#
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 \
#     --build-arg VERSION=v0.1.0 -t fleet2mqtt:v0.1.0 .
#
# Run (cars dial port 443; MQTT on 1883; web listener kept on this host):
#
#   docker run -d --name fleet2mqtt --restart unless-stopped \
#     -p 443:8443 -p 1883:1883 -p 127.0.0.1:8080:8080 \
#     -v fleet2mqtt-data:/data fleet2mqtt:v0.1.0
#
# Inside the container fleet2mqtt listens on all interfaces (the defaults,
# 127.0.0.1, would be unreachable through published ports):
#
#   8443  vehicles (mutual TLS WebSocket): publish it as host port 443
#   1883  embedded MQTT broker (plain MQTT)
#   8080  web listener: /healthz, and the setup page
#
# Security: anonymous MQTT clients are accepted from loopback only
# (mqtt.embedded.allow_anonymous: loopback), and in a container loopback is
# the container itself. Every client that comes through a published port,
# from the host or the LAN, needs a user in mqtt.embedded.users. That is
# intended: the broker carries where your car is. Publish 8080 on
# 127.0.0.1 (as above) or behind your reverse proxy.
#
# Your own configuration replaces the image's entirely: mount it and point
# FLEET2MQTT_CONFIG at it (serve and the health check both read it), and
# keep the keys of /etc/fleet2mqtt/config.yaml below in it:
#
#   docker run ... -v ./config.yaml:/config/config.yaml:ro \
#     -e FLEET2MQTT_CONFIG=/config/config.yaml fleet2mqtt:v0.1.0
#
# A bind-mounted /data must be writable by uid 65532
# (chown 65532:65532 ./data); a named volume is prepared by Docker.
#
# No Docker engine runs where this file is developed; scripts/crossbuild
# builds the same binaries with the same flags, and CI runs it.

ARG GO_VERSION=1.26

# ---------------------------------------------------------------------------
# Build stage: runs on the build machine's platform and cross-compiles.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Tesla's vehicle CA bundle: the authorities that sign the client
# certificates of real cars. Public certificates, published in Tesla's
# fleet-telemetry repository; taken from a pinned commit and checked, never
# committed here. Update both arguments together.
ARG TESLA_CA_COMMIT=4767414c1297c8db37a082561c2b761ce8613590
ARG TESLA_CA_SHA256=c572d41d96b106fb20519e7fca3ab70693772aa96d6bab564073bacb097e3282
RUN curl --fail --silent --show-error --location --retry 3 \
      --output /tmp/tesla-vehicle-ca.pem \
      "https://raw.githubusercontent.com/teslamotors/fleet-telemetry/${TESLA_CA_COMMIT}/config/files/prod_ca.crt" \
 && echo "${TESLA_CA_SHA256}  /tmp/tesla-vehicle-ca.pem" | sha256sum --check --strict - \
 && grep -q -- "-----BEGIN CERTIFICATE-----" /tmp/tesla-vehicle-ca.pem

# The final image's files that are the same on every platform: the user,
# the data directory and the certificate bundles.
RUN mkdir -p /rootfs/etc/fleet2mqtt /rootfs/etc/ssl/certs /rootfs/data /rootfs/tmp \
 && chmod 1777 /rootfs/tmp \
 && echo "nonroot:x:65532:65532:fleet2mqtt:/data:/sbin/nologin" > /rootfs/etc/passwd \
 && echo "nonroot:x:65532:" > /rootfs/etc/group \
 && install -m 0444 /tmp/tesla-vehicle-ca.pem /rootfs/etc/fleet2mqtt/tesla-vehicle-ca.pem \
 && install -m 0444 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt

WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .
ARG TARGETOS TARGETARCH TARGETVARIANT
ARG VERSION=dev
# GOARM is the variant without its v: linux/arm/v7 builds with GOARM=7.
# The flags are those of scripts/crossbuild; keep them equal.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS="${TARGETOS}" GOARCH="${TARGETARCH}" GOARM="${TARGETVARIANT#v}" \
    go build -trimpath -ldflags "-s -w -X main.Version=${VERSION}" \
      -o /out/fleet2mqtt ./cmd/fleet2mqtt

# ---------------------------------------------------------------------------
# Final image: nothing but the binary and its files.
FROM scratch

ARG VERSION=dev
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="fleet2mqtt" \
      org.opencontainers.image.description="Tesla fleet telemetry straight to MQTT and Home Assistant, from one small program" \
      org.opencontainers.image.url="https://github.com/fleet2mqtt/fleet2mqtt" \
      org.opencontainers.image.source="https://github.com/fleet2mqtt/fleet2mqtt" \
      org.opencontainers.image.documentation="https://github.com/fleet2mqtt/fleet2mqtt#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

COPY --from=build /rootfs/etc/ /etc/
COPY --from=build /rootfs/tmp /tmp
COPY --from=build --chown=65532:65532 /rootfs/data /data
COPY --from=build /out/fleet2mqtt /fleet2mqtt

# The configuration for a container: listen on every interface of the
# container and accept real cars signed by Tesla's vehicle CA. Everything
# else keeps its default (config.example.yaml lists them).
COPY --chmod=0444 <<EOF /etc/fleet2mqtt/config.yaml
# fleet2mqtt in a container. A file of your own (FLEET2MQTT_CONFIG) replaces
# this one: keep these keys in it.
vehicle:
  listen: ":8443"
  client_ca_files:
    - /etc/fleet2mqtt/tesla-vehicle-ca.pem
mqtt:
  embedded:
    # Anonymous clients: loopback only, i.e. nobody outside the container.
    # Add users for Home Assistant, Node-RED, mosquitto_sub:
    #   users:
    #     - name: homeassistant
    #       password: a-long-secret
    listen: ":1883"
http:
  listen: ":8080"
EOF

ENV FLEET2MQTT_CONFIG=/etc/fleet2mqtt/config.yaml \
    FLEET2MQTT_DATA_DIR=/data
VOLUME ["/data"]
WORKDIR /data
EXPOSE 8443/tcp 1883/tcp 8080/tcp
USER 65532:65532

HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/fleet2mqtt", "healthcheck"]

ENTRYPOINT ["/fleet2mqtt"]
CMD ["serve"]
