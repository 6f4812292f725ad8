# The canary router: Debian's HAProxy, configured at start by the file shipml copies in
# (/shipml/haproxy.cfg) and steered live through its Runtime API (stats socket on 127.0.0.1).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /shipml
CMD ["haproxy", "-db", "-W", "-f", "/shipml/haproxy.cfg"]
