# syntax=docker/dockerfile:1
# The Go runtime image: `gloam` and the Go example built with cgo against libgloam.a.
#   docker build -f deploy/docker/go.Dockerfile -t gloam/go .
FROM rust:1.85-bookworm AS rust
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gloam-engine -p gloam-c

FROM golang:1.22-bookworm AS build
WORKDIR /src
COPY --from=rust /src/ /src/
WORKDIR /src/examples/hello-go
RUN CGO_ENABLED=1 go build -tags gloam_release -o /out/bin/hello-go . \
    && install -D -m 0755 /src/target/release/gloam /out/bin/gloam

FROM debian:bookworm-slim AS runtime
RUN groupadd --gid 10001 gloam && useradd --uid 10001 --gid gloam --no-create-home --shell /usr/sbin/nologin gloam
COPY --from=build /out/bin/ /opt/gloam/bin/
ENV PATH=/opt/gloam/bin:$PATH
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/opt/gloam/bin/gloam"]
CMD ["--help"]
