# Saga's OCI image: the static binary on an empty base. No base image is
# pulled; the build context holds everything (`make image` stages it, and
# goreleaser does the same):
#   saga                            the static linux binary
#   packaging/image/passwd, group   the non-root user 65532
#   bin/assets/ca-certificates.crt  CA certificates, for rediss:// and TLS
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
COPY bin/assets/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=65532:65532 saga /usr/bin/saga
# The state directory must exist and belong to the user before VOLUME, so a
# fresh named volume is writable by it.
COPY --chown=65532:65532 packaging/image/state/ /var/lib/saga/

# In a container Saga listens on every interface; the data lives in the volume.
ENV SAGA_SERVER_HOST=0.0.0.0 \
    SAGA_DATA_DIR=/var/lib/saga

USER 65532:65532
WORKDIR /var/lib/saga
EXPOSE 8030
VOLUME /var/lib/saga

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/bin/saga", "health", "--quiet"]

ENTRYPOINT ["/usr/bin/saga"]
CMD ["serve"]
