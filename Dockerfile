# syntax=docker/dockerfile:1
#
# csrgate's image: `make image` (docker build -t csrgate:dev .).
#
# Stage 1 builds one static binary for the musl target of the build platform (x86_64 or
# aarch64); stage 2 is distroless `static` (no shell, no package manager, no libc) running it
# as the `nonroot` user (65532). docs/operations.md says how this was checked without a Docker
# engine: the same commands were run on a Debian bookworm host with the same toolchain.

FROM docker.io/library/rust:1.95-bookworm AS builder
# musl-gcc compiles ring's C and assembly for the musl target (cc-rs reads TARGET_CC).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "$(uname -m)-unknown-linux-musl"
ENV TARGET_CC=musl-gcc
WORKDIR /src
COPY . .
# .git is not in the build context: `make image` passes the commit for `csrgate --version`.
ARG CSRGATE_GIT_COMMIT=unknown
ENV CSRGATE_GIT_COMMIT=${CSRGATE_GIT_COMMIT}
# --locked: the image is built from Cargo.lock exactly, or not at all.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
    && cargo build --release --locked --target "$target" -p csrgate \
    && cp "target/$target/release/csrgate" /csrgate \
    && /csrgate --version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /csrgate /csrgate
USER nonroot
# Metrics, /healthz and /readyz (--metrics-addr).
EXPOSE 8080
ENTRYPOINT ["/csrgate"]
CMD ["controller"]
