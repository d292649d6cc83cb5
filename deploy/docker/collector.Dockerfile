# syntax=docker/dockerfile:1
# Image of the CitySense collector: one static binary on scratch, run as a non-root
# user, for linux/amd64, linux/arm64 and linux/arm/v7. From the repository's root:
#
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 \
#       -f deploy/docker/collector.Dockerfile -t citysense-collector:dev .
#
# The Go compiler runs on the build machine's platform and cross-compiles
# (CGO_ENABLED=0), so no emulation is needed to build the arm images.
ARG GO_VERSION=1.26

# The portal's map and chart libraries, from its npm lock file, copied where
# the collector embeds them (static/vendor is not in the repository).
FROM --platform=$BUILDPLATFORM node:22-bookworm-slim AS portal
WORKDIR /web
COPY collector/internal/portal/web/package.json collector/internal/portal/web/package-lock.json collector/internal/portal/web/vendor.sh ./
RUN npm ci --omit=dev --no-audit --no-fund && sh vendor.sh node_modules /vendor

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG TARGETVARIANT=
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
COPY --from=portal /vendor ./collector/internal/portal/static/vendor
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/citysense/citysense/internal/cli.version=$VERSION" \
      -o /out/usr/bin/citysense-collector ./collector/cmd/citysense-collector
# The data directory, owned by the image's user, and the configuration.
RUN mkdir -p /out/var/lib/citysense /out/etc/citysense \
 && sed 's#^  data_dir: .*#  data_dir: /var/lib/citysense#' configs/collector.yaml > /out/etc/citysense/collector.yaml \
 && printf 'citysense:x:65532:65532:CitySense:/var/lib/citysense:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'citysense:x:65532:\n' > /out/etc/group

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/etc/ /etc/
COPY --from=build /out/usr/bin/citysense-collector /usr/bin/citysense-collector
COPY --from=build --chown=65532:65532 /out/var/lib/citysense /var/lib/citysense
USER 65532:65532
VOLUME /var/lib/citysense
# HTTP (API, portal, Influx write, /metrics), NATS for agents, and the
# cluster's gossip and routes.
EXPOSE 8080 4222 7946 7946/udp 6222
ENTRYPOINT ["/usr/bin/citysense-collector"]
CMD ["run", "-c", "/etc/citysense/collector.yaml", "--data-dir", "/var/lib/citysense", "--http", "0.0.0.0:8080", "--nats", "0.0.0.0:4222"]
