# dualmesh: a static binary on a distroless base, running as non-root.
# Build: docker build -t dualmesh:dev .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests/support ./tests/support
# Cargo.toml names the benchmarks: the manifest does not load without them.
COPY benches ./benches
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin dualmesh

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/dualmesh /dualmesh
USER 65532:65532
ENTRYPOINT ["/dualmesh"]
