# syntax=docker/dockerfile:1
# The Node.js runtime image: `gloam`, the `gloam` Node addon (napi-rs) and the Node example.
#   docker build -f deploy/docker/node.Dockerfile -t gloam/node .
FROM rust:1.85-bookworm AS build
WORKDIR /src
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked -p gloam-engine \
    && install -D -m 0755 target/release/gloam /out/bin/gloam
WORKDIR /src/bindings/node
RUN npm ci --ignore-scripts && npm run build

FROM node:20-bookworm-slim AS runtime
RUN groupadd --gid 10001 gloam && useradd --uid 10001 --gid gloam --no-create-home --shell /usr/sbin/nologin gloam
COPY --from=build /out/bin/ /opt/gloam/bin/
COPY --from=build /src/bindings/node/ /opt/gloam/node_modules/gloam/
COPY examples/hello-node/ /opt/gloam/functions/node/
ENV PATH=/opt/gloam/bin:$PATH NODE_PATH=/opt/gloam/node_modules
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/opt/gloam/bin/gloam"]
CMD ["--help"]
