# syntax=docker/dockerfile:1
# The C/C++ runtime image: `gloam`, `gloam-cworker` (hosts Nightcore-style function .so files)
# and the C examples built against libgloam.a.
#   docker build -f deploy/docker/c.Dockerfile -t gloam/c .
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gloam-engine -p gloam-c \
    && make -C examples/hello-c PROFILE=release BUILD=/out/functions \
    && install -D -m 0755 target/release/gloam /out/bin/gloam \
    && install -m 0755 target/release/gloam-cworker /out/bin/gloam-cworker

FROM debian:bookworm-slim AS runtime
RUN groupadd --gid 10001 gloam && useradd --uid 10001 --gid gloam --no-create-home --shell /usr/sbin/nologin gloam
COPY --from=build /out/bin/ /opt/gloam/bin/
COPY --from=build /out/functions/ /opt/gloam/functions/c/
ENV PATH=/opt/gloam/bin:$PATH
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/opt/gloam/bin/gloam"]
CMD ["--help"]
