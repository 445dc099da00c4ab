# syntax=docker/dockerfile:1
# The engine image: the `gloam` binary (engine, gateway, launchers, CLI) and the Rust example
# functions (`hello-rust`), on a slim Debian, running as an unprivileged user.
#   docker build -f deploy/docker/engine.Dockerfile -t gloam/engine .
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gloam-engine -p hello-rust \
    && install -D -m 0755 target/release/gloam /out/bin/gloam \
    && install -D -m 0755 target/release/hello-rust /out/bin/hello-rust

FROM debian:bookworm-slim AS runtime
RUN groupadd --gid 10001 gloam && useradd --uid 10001 --gid gloam --no-create-home --shell /usr/sbin/nologin gloam
COPY --from=build /out/bin/ /opt/gloam/bin/
ENV PATH=/opt/gloam/bin:$PATH
USER 10001:10001
EXPOSE 8080 7070
ENTRYPOINT ["/opt/gloam/bin/gloam"]
CMD ["--help"]
