# sluice: one static binary, run as gateway, agent (which starts its node
# processes from the same binary) or dev. Build from the repository root:
#   docker build -t sluice .
# docs/deploy.md says how to run it.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no libc), reproducible paths; the built-in policies are committed
# .wasm files embedded in the binary, so no generate step runs here.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/sluice ./cmd/sluice \
 && mkdir -p /out/state

# distroless/static: no shell, no package manager, CA roots for ACME and
# webhooks, and the nonroot user (uid 65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
# The working directory holds what sluice writes: ACME storage (./acme) and
# process inspection snapshots (log/process). Mount a volume here to keep them.
COPY --from=build --chown=65532:65532 /out/state /var/lib/sluice
WORKDIR /var/lib/sluice
# The policy host's compilation cache ($XDG_CACHE_HOME/sluice/wazero) goes
# there too, so a read-only root file system is enough.
ENV XDG_CACHE_HOME=/var/lib/sluice/.cache
USER 65532:65532

# Gateway: WHIP, WHEP, /v1, /metrics, /healthz, /readyz and the dashboard (gateway.listen).
EXPOSE 8080/tcp
# Gateway: the one ICE UDP port every WebRTC session uses (gateway.iceUDPPort).
EXPOSE 8189/udp
# Gateway: Media over QUIC, raw QUIC and WebTransport (gateway.moq.listen; off unless set).
EXPOSE 4443/udp
# Gateway and agent: serf gossip, TCP and UDP (cluster.bind).
EXPOSE 7946/tcp 7946/udp
# Agent: the agent API gateways call, HTTPS with mutual TLS (agent.api).
EXPOSE 7443/tcp
# Agent: its own /metrics, plain HTTP (agent.metrics; bind it beyond loopback to scrape).
EXPOSE 9464/tcp
# Agent: each node process's QUIC media link listens on an ephemeral UDP port of
# agent.mediaHost (default: agent.api's host); gateways dial it directly, so
# agents and gateways need a flat network between them (a pod network, a compose
# network), not published ports.

ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]
