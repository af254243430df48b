# The tether image for users with Docker: the release binary and tools/image/rootfs.sh's filesystem (the
# binary, the glibc and libgcc_s it links, Debian's CA bundle, /etc/passwd with nonroot 65532), run as
# 65532. The tested path is tools/image (`make image`: the same rootfs.sh under buildah, no daemon; the
# image test, crates/tether/tests/image.rs, runs it and checks this file says the same).
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t tether:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tether --bin tether
RUN tools/image/rootfs.sh target/release/tether /rootfs

FROM scratch
ARG REVISION=unknown
COPY --from=build /rootfs /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tether"]
LABEL org.opencontainers.image.title=tether \
      org.opencontainers.image.source=https://github.com/tether-dev/tether \
      org.opencontainers.image.version=0.1.0 \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.licenses=Apache-2.0
