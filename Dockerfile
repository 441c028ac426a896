# Saga's OCI image, built from source:
#
#   docker build -t saga:latest .
#   podman build --format docker -t saga:latest .
#
# (podman's default OCI format drops the HEALTHCHECK; --format docker keeps
# it.) The first stage compiles a static binary in the official Go image;
# the second puts it, the non-root user 65532 and CA certificates on an
# empty base. Build arguments:
#   VERSION, REVISION, CREATED  stamp the binary and the labels, as
#                               `make build` does (the Makefile passes them)
#   GO_IMAGE                    the builder image
# The release images (`make image`, goreleaser) put a binary built
# beforehand into the same final stage, with packaging/image/Dockerfile.
ARG GO_IMAGE=golang:1.26-bookworm

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
WORKDIR /src
# The modules first: a change to the code alone reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${REVISION} -X main.date=${CREATED}" \
      -o /out/saga ./cmd/saga

FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="saga" \
      org.opencontainers.image.description="Saga service-discovery registry" \
      org.opencontainers.image.url="https://github.com/sagaproject/saga" \
      org.opencontainers.image.source="https://github.com/sagaproject/saga" \
      org.opencontainers.image.documentation="https://github.com/sagaproject/saga/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Saga" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

COPY packaging/image/passwd packaging/image/group /etc/
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65532:65532 /out/saga /usr/bin/saga
# The state directory must exist and belong to the user before VOLUME, so a
# fresh named volume is writable by it.
COPY --chown=65532:65532 packaging/image/state/ /var/lib/saga/

# In a container Saga listens on every interface; the data lives in the volume.
# Protected mode stays on: through a published port, all but the probes get
# 403 until auth is on or SAGA_SERVER_PROTECTED_MODE=false (docs/install.md).
ENV SAGA_SERVER_HOST=0.0.0.0 \
    SAGA_DATA_DIR=/var/lib/saga

USER 65532:65532
WORKDIR /var/lib/saga
EXPOSE 8030
VOLUME /var/lib/saga

# With server.tls.* set, `saga health` asks over https and trusts the
# server's own certificate; under mTLS it needs SAGA_CLIENT_CERT and
# SAGA_CLIENT_KEY in the environment (docs/security.md).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/bin/saga", "health", "--quiet"]

ENTRYPOINT ["/usr/bin/saga"]
CMD ["serve"]
