# Build: the release binary only (the manifest names the tests and the bench example, so
# their sources come along for cargo to read the manifest).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY tests tests
COPY bench bench
RUN cargo build --release --locked --bin shipping-service

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
ENTRYPOINT ["shipping-service"]
CMD ["serve"]
