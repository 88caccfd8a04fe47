# Build: the dependencies first, in a layer of their own, so that a change of the service's
# source rebuilds only the service. The manifest names a test and two bench examples, so empty
# stand-ins for them (and for the crate) let cargo read it before the sources come in.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Build settings: the bundled SQLite's compile-time options.
COPY .cargo .cargo
RUN mkdir -p src tests/api bench \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for stub in tests/api/main.rs bench/loadgen.rs bench/subscriber.rs; do echo 'fn main() {}' > $stub; done \
 && cargo build --release --locked --bin shipping-service \
 && rm -rf src tests bench
COPY build.rs ./
COPY src src
COPY migrations migrations
COPY tests tests
COPY bench bench
# The stand-ins' build outputs are older than the real sources; touch so cargo sees the change.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin shipping-service

# Run: a small Debian with the binary, as an unprivileged user.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /app shipping \
 && mkdir -p /app/data && chown shipping /app/data
WORKDIR /app
COPY --from=build /src/target/release/shipping-service /usr/local/bin/shipping-service
USER shipping
ENV LISTEN_ADDR=0.0.0.0:8080 \
    DATABASE_URL=sqlite://data/shipping.db \
    LOG_FORMAT=json
EXPOSE 8080
# The SQLite database lives here; mount a volume to keep it across containers.
VOLUME ["/app/data"]
# /healthz over bash's /dev/tcp: the slim image has no curl, and needs none.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["shipping-service"]
CMD ["serve"]
