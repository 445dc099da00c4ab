# syntax=docker/dockerfile:1
# The Python runtime image: `gloam`, the `gloam` Python package (built with maturin) and the
# Python example, so that `gloam up` can start Python workers in the same container.
#   docker build -f deploy/docker/python.Dockerfile -t gloam/python .
FROM rust:1.85-bookworm AS build
WORKDIR /src
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir maturin==1.7.4
COPY . .
RUN cargo build --release --locked -p gloam-engine \
    && /venv/bin/maturin build --release --manifest-path bindings/python/Cargo.toml --out /out/wheels \
    && install -D -m 0755 target/release/gloam /out/bin/gloam

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --gid 10001 gloam && useradd --uid 10001 --gid gloam --no-create-home --shell /usr/sbin/nologin gloam
COPY --from=build /out/wheels/ /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels
COPY --from=build /out/bin/ /opt/gloam/bin/
COPY examples/hello-python/ /opt/gloam/functions/python/
ENV PATH=/opt/gloam/bin:$PATH
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/opt/gloam/bin/gloam"]
CMD ["--help"]
