# Multi-stage build of the tether binary into a small non-root image.
# (Our development machines run no Docker engine, so this file is not exercised by the test suite.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tether

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tether /usr/local/bin/tether
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/tether"]
