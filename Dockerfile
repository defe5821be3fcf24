# syntax=docker/dockerfile:1
#
# Container image of event-hub: `docker build -t event-hub .`
#
# The builder compiles librdkafka from source (rdkafka-sys runs its
# configure script and make), which needs only the C compiler, make and
# zlib headers that the rust image already has. The cache mounts keep the
# crate registry and the target directory between builds (BuildKit).

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package event-hub --bin event-hub \
    && install -m 0755 target/release/event-hub /usr/local/bin/event-hub

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 event-hub \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/event-hub \
        --shell /usr/sbin/nologin event-hub \
    && mkdir -p /var/lib/event-hub/keys \
    && chown -R 10001:10001 /var/lib/event-hub
COPY --from=builder /usr/local/bin/event-hub /usr/local/bin/event-hub

# The working directory holds the default SQLite database and, in
# docker-compose, the generated signing key; production uses PostgreSQL or
# MySQL and a mounted key.
WORKDIR /var/lib/event-hub
USER 10001:10001
# Inside a container the HTTP server must listen on every interface to be
# reachable; the binary's own default is 127.0.0.1:8080.
ENV EVENT_HUB__HTTP__LISTEN=0.0.0.0:8080 \
    EVENT_HUB__LOG__FORMAT=json
EXPOSE 8080
ENTRYPOINT ["event-hub"]
CMD ["run"]
