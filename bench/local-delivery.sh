#!/usr/bin/env bash
# Local delivery benchmark (issue 3): Postfix's smtp-source sends N messages of S bytes over
# C parallel sessions into one Bridgehead server with its queues running; the clock stops
# when the last message is in the recipient's Maildir. Prints accepted and delivered
# messages/s and the server's peak RSS (VmHWM). Loopback only; not part of the test suite.
#   N=20000 C=50 S=4096 bench/local-delivery.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-20000}
C=${C:-50}
S=${S:-4096}
LIMIT_S=${LIMIT_S:-900}   # hard limit for the whole run
STALL_S=${STALL_S:-60}    # give up when the Maildir has not grown for this long
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
[ -x "$SMTP_SOURCE" ] || { echo "smtp-source not found at $SMTP_SOURCE" >&2; exit 2; }
[ -f "$here/dist/src/cli/main.js" ] || (cd "$here" && npx tsc -p .)

state=$(mktemp -d "${TMPDIR:-/tmp}/bh-local-bench.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  [ "${KEEP:-0}" = 1 ] && echo "kept $state" >&2 || rm -rf "$state"
}
trap cleanup EXIT

port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
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
            ip: 127.0.0.1
            port: $port
            messages: { maxMessagesPerConnection: null }
recipientPolicies:
  - { name: Default Policy, addresses: [{ address: "@example.com", authoritative: true }] }
directory:
  users:
    - { name: Sender, addresses: [sender@example.com], mailbox: { server: BENCH } }
    - { name: Alice, addresses: [alice@example.com], mailbox: { server: BENCH } }
YAML

node "$here/dist/src/cli/main.js" serve --config "$state/org.yaml" >"$state/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  grep -q "listening on" "$state/server.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$state/server.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "listening on" "$state/server.log" || { echo "server did not start" >&2; exit 1; }

maildir="$state/data/mailboxes/Mailbox_Store/alice@example.com/new"
count() { ls -f "$maildir" 2>/dev/null | grep -vc '^\.' || true; }
now() { date +%s.%N; }

echo "# N=$N C=$C S=$S port=$port pid=$pid"
t0=$(now)
timeout "$LIMIT_S" "$SMTP_SOURCE" -l "$S" -m "$N" -s "$C" -f sender@example.com -t alice@example.com \
  "127.0.0.1:$port" >/dev/null
t_accept=$(now)
echo "# accepted $N in $(echo "$t_accept - $t0" | bc) s; $(count) already delivered"

last=-1
last_change=$(now)
while :; do
  n=$(count)
  t=$(now)
  [ "$n" -ge "$N" ] && break
  if [ "$n" != "$last" ]; then last=$n; last_change=$t; fi
  if [ "$(echo "$t - $last_change > $STALL_S" | bc)" = 1 ] || [ "$(echo "$t - $t0 > $LIMIT_S" | bc)" = 1 ]; then
    echo "gave up: $n of $N delivered" >&2
    exit 1
  fi
  sleep 0.2
done
t_done=$(now)
hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
accept_s=$(echo "$t_accept - $t0" | bc -l)
total_s=$(echo "$t_done - $t0" | bc -l)
printf 'accepted:  %d msgs in %.2f s = %.0f msgs/s\n' "$N" "$accept_s" "$(echo "$N / $accept_s" | bc -l)"
printf 'delivered: %d msgs in %.2f s = %.0f msgs/s (SMTP in to Maildir, end to end)\n' \
  "$(count)" "$total_s" "$(echo "$N / $total_s" | bc -l)"
printf 'peak RSS:  %.0f MB\n' "$(echo "$hwm_kb / 1024" | bc -l)"
