#!/usr/bin/env bash
# The `bridgehead` target of ../shared/bench/relay-bench.sh: writes an organisation file
# from the harness's environment (LISTEN_HOST/PORT, SINK_HOST/PORT, RELAY_DOMAIN,
# BENCH_STATE_DIR) and runs the server in the foreground, so only node is measured.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
state=${BENCH_STATE_DIR:?}
cat >"$state/org.yaml" <<YAML
organisation: { name: Bench }
routingGroups:
  - name: First Routing Group
    servers:
      - name: BENCH
        fqdn: bench.bridgehead.test
        dataDir: $state/data
        messageTracking: { enabled: ${BENCH_TRACKING:-true} }
        virtualServers:
          - name: Default SMTP Virtual Server
            ip: ${LISTEN_HOST:-127.0.0.1}
            port: ${LISTEN_PORT:?}
            relay: { list: ["127.0.0.1/32"] }
            messages: { maxMessagesPerConnection: null }
            delivery:
              smartHost: "[${SINK_HOST:-127.0.0.1}]"
              outboundPort: ${SINK_PORT:?}
recipientPolicies:
  - { name: Default Policy, addresses: [{ address: "@bench.test", authoritative: true }] }
directory:
  users:
    - { name: Sender, addresses: [sender@bench.test], mailbox: { server: BENCH } }
YAML
exec node ${BENCH_NODE_FLAGS:-} "$here/dist/src/cli/main.js" serve --config "$state/org.yaml" ${BRIDGEHEAD_ARGS:-}
