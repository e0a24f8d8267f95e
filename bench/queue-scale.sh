#!/usr/bin/env bash
# Queue scale benchmark: how one Bridgehead server behaves while its queue holds Q messages
# for a destination that is down, beside the same run's empty-queue figures.
#
#   smtp-source --> Bridgehead 127.0.0.1:SMTP --(Live Connector, live.test)--> smtp-sink
#                                              \-(Dead Connector, dead.test)--> 127.0.0.9:DEAD
#                                                 (nothing listens there: connection refused)
#
# Phases, in this order:
#   empty  (a) relay: N messages to live.test (C sessions), from injection start until the
#              sink has counted all N;  (c) GET /api/v1/queues and GET /metrics, R requests
#              each, median and max (curl time_total; "server" = time_starttransfer -
#              time_pretransfer, since the admin API logs no response times), and one
#              `bridgehead queue list`;  (e) VmRSS / VmHWM of the node process;
#              (d) SIGTERM, wait for exit, start again, time until the SMTP port accepts a
#              connection;  (b) accept: M messages to dead.test, smtp-source's own time.
#   fill   stop, wipe the data dir, `serve --hold` (accepts and spools, runs no queue),
#          inject Q messages to dead.test, stop, start without --hold and wait until the
#          categorizer has placed them all in the Dead Connector's queue.
#   full   the same (a) (c) (e) (d) (b) with Q messages waiting for the dead destination.
# (b) comes last in each phase so that the empty phase's other figures are taken with an
# empty queue. Mail for dead.test is retried as configured (glitchRetryInterval, default
# 60s here as in the shipped defaults): the retry traffic of a full queue is part of what is
# measured.
#
# Usage:
#   bench/queue-scale.sh [-q Q] [-n N] [-m M] [-c C] [-s S] [-w WORKDIR] [-L LIMIT_S]
#     -q Q        messages queued for the dead destination (default 200000)
#     -n N        relay messages to live.test per phase (default 5000)
#     -m M        accept messages to dead.test per phase (default 5000)
#     -c C        smtp-source sessions for (a) and (b) (default 20)
#     -s S        message body size in bytes (default 4096)
#     -w WORKDIR  work dir (default /tmp/bh-queue-scale); the data dir is WORKDIR/data
#     -L LIMIT_S  the whole run is stopped after this many seconds (default 3600)
#   Environment: FILL_C (50) sessions while filling; REQS (20) admin API requests per URL;
#   GLITCH (60s) glitchRetryInterval; TRACKING (true) message tracking; SETTLE_S (5)
#   pause after a restart before (b) and after the fill; RELAY_MAX_S (600), STALL_S (60),
#   INJECT_MAX_S (600), FILL_MAX_S (2400), DRAIN_MAX_S (2400), START_MAX_S (600),
#   STOP_MAX_S (60), API_MAX_S (120) bound each wait; KEEP=1 keeps the data dir.
# Prints a table (metric, empty, full, full/empty, target, met) and appends one line per
# metric to WORKDIR/results.tsv. On the code of 2026-11-26 the fill alone of -q 200000 takes
# more than 40 minutes (the categorizer places ~80 msg/s with 200,000 waiting); -q 100000
# took 25 minutes in all, -q 20000 under 3 (docs/performance.md, "Queue scale").
# Loopback only; needs root for smtp-sink -u nobody.
# Build first: npm run build.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

Q=${Q:-200000} N=${N:-5000} M=${M:-5000} C=${C:-20} S=${S:-4096}
WORKDIR=${WORKDIR:-/tmp/bh-queue-scale} LIMIT_S=${LIMIT_S:-3600}
while getopts "q:n:m:c:s:w:L:h" opt; do
  case $opt in
    q) Q=$OPTARG ;; n) N=$OPTARG ;; m) M=$OPTARG ;; c) C=$OPTARG ;; s) S=$OPTARG ;;
    w) WORKDIR=$OPTARG ;; L) LIMIT_S=$OPTARG ;;
    h) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done
FILL_C=${FILL_C:-50} REQS=${REQS:-20} GLITCH=${GLITCH:-60s} TRACKING=${TRACKING:-true}
SETTLE_S=${SETTLE_S:-5} RELAY_MAX_S=${RELAY_MAX_S:-600} STALL_S=${STALL_S:-60}
INJECT_MAX_S=${INJECT_MAX_S:-600} FILL_MAX_S=${FILL_MAX_S:-2400} DRAIN_MAX_S=${DRAIN_MAX_S:-2400}
START_MAX_S=${START_MAX_S:-600} STOP_MAX_S=${STOP_MAX_S:-60} API_MAX_S=${API_MAX_S:-120}
for v in Q N M C S LIMIT_S FILL_C REQS SETTLE_S RELAY_MAX_S STALL_S INJECT_MAX_S FILL_MAX_S \
  DRAIN_MAX_S START_MAX_S STOP_MAX_S API_MAX_S; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "queue-scale: $v must be a non-negative integer" >&2; exit 2; }
done
for b in smtp-source smtp-sink perl curl jq timeout node; do
  command -v "$b" >/dev/null || { echo "queue-scale: missing $b" >&2; exit 2; }
done
[ -f "$here/dist/src/cli/main.js" ] || { echo "queue-scale: run npm run build first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "queue-scale: run as root (smtp-sink -u nobody)" >&2; exit 2; }
case $WORKDIR in /|/tmp|/tmp/|"") echo "queue-scale: refusing WORKDIR=$WORKDIR" >&2; exit 2 ;; esac
mkdir -p "$WORKDIR" || exit 2
WORKDIR=$(cd "$WORKDIR" && pwd)
cd "$WORKDIR" || exit 2
DATA=$WORKDIR/data
LOG=$WORKDIR/server.log
ulimit -n "$(ulimit -Hn)" 2>/dev/null
T_BEGIN=$EPOCHREALTIME

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.3f", b - a }'; }
alive() { [[ ${1:-} =~ ^[0-9]+$ ]] && [ "$1" -gt 1 ] && kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------- processes we start
SRV_PID="" SINK_PID="" WATCHDOG="" CUR_PID="" INJ_ERRORS=""
stop_pid() {  # stop_pid PID GRACE_S: TERM, wait, KILL; only PIDs this script started
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < $2 * 10; i++)); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
cleanup() {
  trap - EXIT INT TERM
  stop_pid "$CUR_PID" 5
  stop_pid "$SRV_PID" 30
  stop_pid "$SINK_PID" 5
  alive "$WATCHDOG" && kill "$WATCHDOG" 2>/dev/null
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$DATA"; fi
}
trap cleanup EXIT
REPORTED=0
trap 'say "interrupted"; stop_pid "$CUR_PID" 5; [ "$REPORTED" = 1 ] || report; exit 130' INT TERM
# The whole run is bounded: the watchdog TERMs this script (every wait below has its own
# timeout, so the trap runs within that bound).
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$LIMIT_S" & sp=$!
  wait "$sp" && { echo "queue-scale: LIMIT_S=$LIMIT_S reached" >&2; kill -TERM $$; }
) 2>/dev/null &
WATCHDOG=$!

free_port() {  # free_port ADDRESS
  node -e "const s=require('net').createServer().listen(0,process.argv[1],()=>{console.log(s.address().port);s.close()})" "$1"
}

# wait_port HOST PORT MAX_S PID: 0 once a TCP connection succeeds (polled every 10 ms),
# 1 on timeout, 2 if PID died first.
wait_port() {
  perl -MIO::Socket::INET -MTime::HiRes=time,sleep -e '
    my ($h, $p, $max, $pid) = @ARGV; my $t0 = time;
    for (my $i = 0; $i < 1e7 && time - $t0 < $max; $i++) {
      my $s = IO::Socket::INET->new(PeerAddr => $h, PeerPort => $p, Proto => "tcp", Timeout => 1);
      if ($s) { close $s; exit 0 }
      exit 2 unless kill 0, $pid;
      sleep 0.01;
    }
    exit 1' "$@"
}

# wait_sink FILE TARGET MAX_S STALL_S: prints the epoch time at which smtp-sink's counter
# (the last "mesg=N" of `smtp-sink -c`) reached TARGET, or "stalled N" / "timeout N".
wait_sink() {
  perl -MTime::HiRes=time,sleep -e '
    my ($f, $target, $max, $stall) = @ARGV;
    sub count { open(my $fh, "<", $f) or return 0; my $sz = -s $fh || 0;
      seek($fh, $sz > 256 ? $sz - 256 : 0, 0); local $/; my $b = <$fh> // "";
      my @m = $b =~ /mesg=(\d+)/g; return @m ? $m[-1] : 0 }
    my $t0 = time; my ($last, $tl) = (-1, $t0);
    for (my $i = 0; $i < 1e8; $i++) {
      my $t = time; my $c = count();
      if ($c >= $target) { printf "%.6f\n", $t; exit 0 }
      if ($c != $last) { ($last, $tl) = ($c, $t) }
      if ($t - $tl > $stall) { print "stalled $c\n"; exit 1 }
      if ($t - $t0 > $max) { print "timeout $c\n"; exit 1 }
      sleep 0.01;
    }' "$@"
}
sink_count() { tr '\r' '\n' <"$WORKDIR/sink.out" 2>/dev/null | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }

# ---------------------------------------------------------------- organisation
SMTP_PORT=$(free_port 127.0.0.1) ADMIN_PORT=$(free_port 127.0.0.1) SINK_PORT=$(free_port 127.0.0.1)
DEAD_HOST=127.0.0.9 DEAD_PORT=$(free_port 127.0.0.9)
TOKEN=bench-$RANDOM$RANDOM
API=http://127.0.0.1:$ADMIN_PORT
cat >"$WORKDIR/org.yaml" <<YAML
# written by bench/queue-scale.sh
organisation: { name: QueueScale }
routingGroups:
  - name: First Routing Group
    servers:
      - name: SCALE
        fqdn: scale.bridgehead.test
        dataDir: $DATA
        messageTracking: { enabled: $TRACKING }
        adminApi: { host: 127.0.0.1, port: $ADMIN_PORT, token: "$TOKEN" }
        virtualServers:
          - name: Default SMTP Virtual Server
            ip: 127.0.0.1
            port: $SMTP_PORT
            relay: { list: ["127.0.0.1/32"] }
            messages: { maxMessagesPerConnection: null }
            delivery: { glitchRetryInterval: $GLITCH }
    connectors:
      - type: smtp
        name: Dead Connector
        addressSpaces: ["SMTP:dead.test:1"]
        smartHosts: ["[$DEAD_HOST]:$DEAD_PORT"]
      - type: smtp
        name: Live Connector
        addressSpaces: ["SMTP:live.test:1"]
        smartHosts: ["[127.0.0.1]:$SINK_PORT"]
recipientPolicies:
  - { name: Default Policy, addresses: [{ address: "@bench.test", authoritative: true }] }
directory:
  users:
    - { name: Sender, addresses: [sender@bench.test], mailbox: { server: SCALE } }
YAML
DEAD_QUEUE="Dead Connector"
node "$here/dist/src/cli/main.js" config check "$WORKDIR/org.yaml" >&2 || exit 1

# ---------------------------------------------------------------- server
SRV_T0=""
start_server() {  # start_server [--hold]: sets SRV_PID and SRV_T0; returns when SMTP accepts
  SRV_T0=$(now)
  echo "=== $(date -Is) serve $*" >>"$LOG"
  # BENCH_NODE_FLAGS: e.g. "--cpu-prof --cpu-prof-dir=DIR" to profile the server.
  node ${BENCH_NODE_FLAGS:-} "$here/dist/src/cli/main.js" serve --config "$WORKDIR/org.yaml" "$@" >>"$LOG" 2>&1 &
  SRV_PID=$!
  wait_port 127.0.0.1 "$SMTP_PORT" "$START_MAX_S" "$SRV_PID" &
  CUR_PID=$!
  wait "$CUR_PID"
  local rc=$?
  CUR_PID=""
  START_S=$(since "$SRV_T0")
  case $rc in
    0) return 0 ;;
    1) say "server did not listen within ${START_MAX_S}s"; return 1 ;;
    *) say "server exited while starting; tail of $LOG:"; tail -5 "$LOG" >&2; return 1 ;;
  esac
}
stop_server() {  # sets STOP_S (SIGTERM until the process is gone); KILL after STOP_MAX_S
  local t0 i
  t0=$(now)
  STOP_KILLED=0
  if alive "$SRV_PID"; then
    kill -TERM "$SRV_PID"
    for ((i = 0; i < STOP_MAX_S * 50; i++)); do alive "$SRV_PID" || break; sleep 0.02; done
    if alive "$SRV_PID"; then kill -KILL "$SRV_PID"; STOP_KILLED=1; say "server did not stop in ${STOP_MAX_S}s: killed"; fi
    wait "$SRV_PID" 2>/dev/null
  fi
  STOP_S=$(since "$t0")
  SRV_PID=""
}
api() {  # api PATH: the body on stdout
  curl -sf --max-time "$API_MAX_S" -H "Authorization: Bearer $TOKEN" "$API$1"
}
wait_api() {
  local i
  for ((i = 0; i < 600; i++)); do
    curl -sf --max-time 5 -o /dev/null -H "Authorization: Bearer $TOKEN" "$API/api/v1/server" && return 0
    alive "$SRV_PID" || return 1
    sleep 0.1
  done
  return 1
}
queue_counts() {  # "categorizer routing presubmission dead" from /api/v1/queues
  api /api/v1/queues | jq -r --arg dead "$DEAD_QUEUE" '
    def n(q): (map(select(.name == q)) | .[0].messageCount) // 0;
    "\(n("Messages awaiting directory lookup")) \(n("Messages waiting to be routed")) \(n("Pre-submission")) \(n($dead))"'
}

# inject COUNT SESSIONS RCPT MAX_S OUTFILE: smtp-source; sets INJ_S, INJ_N (messages it
# counted through DATA, from its -c counter) and INJ_OK
inject() {
  local t0 rc
  t0=$(now)
  timeout -k 5 "$4" smtp-source -c -s "$2" -m "$1" -l "$S" -f sender@bench.test -t "$3" \
    -M client.bench.test "127.0.0.1:$SMTP_PORT" >"$5" 2>"$5.err" &
  CUR_PID=$!
  wait "$CUR_PID"
  rc=$?
  CUR_PID=""
  INJ_S=$(since "$t0")
  INJ_N=$(tr '\r' '\n' <"$5" | grep -E '^[0-9]+$' | tail -1)
  INJ_N=${INJ_N:-0}
  [ "$INJ_N" = "$1" ] || say "smtp-source counted $INJ_N of $1 messages"
  INJ_OK=1
  if [ $rc != 0 ] || [ -s "$5.err" ]; then
    INJ_OK=0
    INJ_ERRORS+=" $(basename "$5")"
    say "smtp-source rc=$rc: $(head -c 300 "$5.err" | tr '\n' ' ')"
  fi
}

# ---------------------------------------------------------------- results
declare -A R
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "NA" }'; }
stats_ms() {  # numbers (seconds) on stdin -> "median_ms max_ms"
  sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "NA NA"; exit }
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "%.1f %.1f\n", m * 1000, a[NR] * 1000 }'
}
latency() {  # latency PHASE KEY PATH
  local f=$WORKDIR/$1-$2.times i
  : >"$f"
  for ((i = 0; i < REQS; i++)); do
    curl -s -o /dev/null --max-time "$API_MAX_S" -H "Authorization: Bearer $TOKEN" \
      -w '%{http_code} %{time_total} %{time_pretransfer} %{time_starttransfer}\n' "$API$3" >>"$f"
  done
  local bad; bad=$(awk '$1 != 200' "$f" | wc -l)
  [ "$bad" = 0 ] || say "$3: $bad of $REQS requests did not answer 200"
  read -r "R[$1.$2_ms]" "R[$1.$2_max_ms]" < <(awk '$1 == 200 { print $2 }' "$f" | stats_ms)
  read -r "R[$1.$2_srv_ms]" _ < <(awk '$1 == 200 { print $4 - $3 }' "$f" | stats_ms)
}

measure() {  # measure PHASE: (a) (c) (e) (d) (b), with the server running
  local p=$1 base t0 tdone out
  say "[$p] (a) relay $N messages to live.test over $C sessions"
  base=$(sink_count); base=${base:-0}
  t0=$(now)
  wait_sink "$WORKDIR/sink.out" $((base + N)) "$RELAY_MAX_S" "$STALL_S" >"$WORKDIR/$p-relay.mon" &
  local mon=$!
  inject "$N" "$C" rcpt@live.test "$INJECT_MAX_S" "$WORKDIR/$p-relay.src"
  R[$p.relay_accept]=$(rate "$INJ_N" "$INJ_S")
  wait "$mon"
  out=$(cat "$WORKDIR/$p-relay.mon")
  if [[ $out =~ ^[0-9.]+$ ]]; then
    R[$p.relay_s]=$(since "$t0" "$out")
    R[$p.relay]=$(rate "$N" "${R[$p.relay_s]}")
  else
    say "[$p] relay did not finish: $out"; R[$p.relay]=NA; R[$p.relay_s]=NA
  fi
  say "[$p]     injected in ${INJ_S}s, sink had all $N after ${R[$p.relay_s]}s: ${R[$p.relay]} msg/s"

  say "[$p] (c) $REQS x GET /api/v1/queues, $REQS x GET /metrics, 1 x queue list"
  latency "$p" queues /api/v1/queues
  latency "$p" metrics /metrics
  t0=$(now)
  BRIDGEHEAD_TOKEN=$TOKEN timeout 300 node "$here/dist/src/cli/main.js" queue list \
    --config "$WORKDIR/org.yaml" >"$WORKDIR/$p-queue-list.txt" 2>&1 || say "[$p] queue list failed"
  R[$p.cli_s]=$(since "$t0")
  read -r _ _ _ "R[$p.dead_queued]" < <(queue_counts)
  say "[$p]     queues ${R[$p.queues_ms]}/${R[$p.queues_max_ms]} ms, metrics ${R[$p.metrics_ms]}/${R[$p.metrics_max_ms]} ms (median/max); dead queue ${R[$p.dead_queued]}"

  say "[$p] (e) memory"
  R[$p.rss]=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$SRV_PID/status" 2>/dev/null)
  R[$p.hwm]=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$SRV_PID/status" 2>/dev/null)

  say "[$p] (d) restart"
  t0=$(now)
  stop_server
  R[$p.stop_s]=$STOP_S
  if start_server; then
    R[$p.start_s]=$START_S
    R[$p.restart_s]=$(since "$t0")
  else
    R[$p.start_s]=NA; R[$p.restart_s]=NA
    return 1
  fi
  say "[$p]     stopped in ${R[$p.stop_s]}s, listening ${R[$p.start_s]}s after start (${R[$p.restart_s]}s in all)"
  wait_api || { say "admin API did not answer"; return 1; }
  sleep "$SETTLE_S"

  say "[$p] (b) accept $M messages to dead.test over $C sessions"
  inject "$M" "$C" rcpt@dead.test "$INJECT_MAX_S" "$WORKDIR/$p-accept.src"
  R[$p.accept]=$(rate "$INJ_N" "$INJ_S")
  R[$p.accept_ok]=$INJ_OK
  say "[$p]     ${INJ_S}s: ${R[$p.accept]} msg/s"
}

# ---------------------------------------------------------------- report
report() {  # the table, also after an interruption (then with what was measured)
REPORTED=1
local errors date_s elapsed tsv
errors=$(grep -ciE '"level":(50|60)|unhandled|error' "$LOG" || true)
date_s=$(date -Is)
elapsed=$(since "$T_BEGIN")
tsv=$WORKDIR/results.tsv
[ -s "$tsv" ] || printf 'date\tcommit\tQ\tN\tM\tC\tS\tmetric\tempty\tfull\tratio\ttarget\tmet\n' >"$tsv"
row() {  # row LABEL KEY TARGET_KIND TARGET_VALUE UNIT
  local label=$1 key=$2 kind=$3 tv=${4:-} unit=${5:-} e=${R[empty.$2]:-NA} f=${R[full.$2]:-NA} ratio target met
  ratio=$(awk -v e="$e" -v f="$f" 'BEGIN { if (e + 0 > 0 && f ~ /^[0-9.]+$/) printf "%.2f", f / e; else print "-" }')
  case $kind in
    rel) target="≥ $tv × empty"
         met=$(awk -v r="$ratio" -v t="$tv" 'BEGIN { print (r == "-") ? "?" : (r + 0 >= t ? "yes" : "NO") }') ;;
    lt) target="< $tv $unit"
        met=$(awk -v f="$f" -v t="$tv" 'BEGIN { print (f !~ /^[0-9.]+$/) ? "?" : (f + 0 < t ? "yes" : "NO") }') ;;
    *) target="-"; met="-" ;;
  esac
  printf '%-36s %10s %10s %8s %16s %4s\n' "$label" "$e" "$f" "$ratio" "$target" "$met"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$date_s" "$commit" "$Q" "$N" "$M" "$C" "$S" \
    "$key" "$e" "$f" "$ratio" "$target" "$met" >>"$tsv"
}
{
  echo
  echo "# queue-scale $date_s commit $commit: Q=$Q (${R[full.dead_queued]:-?} in \"$DEAD_QUEUE\" when measured), N=$N M=$M C=$C S=$S, glitchRetryInterval $GLITCH, tracking $TRACKING"
  echo "# fill: ${R[fill.injected]:-?} of $Q accepted under --hold in ${R[fill.inject_s]:-?}s (${R[fill.inject_rate]:-?} msg/s); stop ${R[fill.hold_stop_s]:-?}s; start ${R[fill.start_s]:-?}s; categorized and routed ${R[fill.drain_s]:-?}s after the restart (about ${R[fill.place_rate]:-?} msg/s once it listened)"
  printf '%-36s %10s %10s %8s %16s %4s\n' metric empty full full/empt target met
  row "(a) relay to live.test, msg/s" relay rel 0.9
  row "    its injection, msg/s" relay_accept info
  row "(b) accept for dead.test, msg/s" accept rel 0.9
  row "(c) GET /api/v1/queues median, ms" queues_ms lt 50 ms
  row "    max, ms" queues_max_ms lt 50 ms
  row "    server time median, ms" queues_srv_ms info
  row "(c) GET /metrics median, ms" metrics_ms lt 50 ms
  row "    max, ms" metrics_max_ms lt 50 ms
  row "    server time median, ms" metrics_srv_ms info
  row "    bridgehead queue list, s" cli_s info
  row "(d) SIGTERM to listening, s" restart_s lt 5 s
  row "    stop (SIGTERM to exit), s" stop_s info
  row "    start to listening, s" start_s info
  row "(e) VmRSS before restart, MB" rss info
  row "    VmHWM (peak), MB" hwm info
  echo "# server time = curl time_starttransfer - time_pretransfer (the admin API logs no response times)"
  [ -z "$INJ_ERRORS" ] || echo "# smtp-source reported errors in:$INJ_ERRORS (see $WORKDIR/*.err)"
  echo "# server log $LOG: $errors line(s) mentioning errors; whole run ${elapsed}s"
}
}

# ---------------------------------------------------------------- run
commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
say "queue-scale: Q=$Q N=$N M=$M C=$C S=$S FILL_C=$FILL_C glitch=$GLITCH tracking=$TRACKING commit=$commit"
say "work dir $WORKDIR; smtp 127.0.0.1:$SMTP_PORT admin $API sink :$SINK_PORT dead $DEAD_HOST:$DEAD_PORT"
rm -rf "$DATA"
: >"$LOG"
smtp-sink -u nobody -c -m 500 "127.0.0.1:$SINK_PORT" 1024 >"$WORKDIR/sink.out" 2>&1 &
SINK_PID=$!
wait_port 127.0.0.1 "$SINK_PORT" 10 "$SINK_PID" || { say "smtp-sink did not start"; exit 1; }
if perl -MIO::Socket::INET -e 'exit(IO::Socket::INET->new(PeerAddr => $ARGV[0], PeerPort => $ARGV[1], Timeout => 2) ? 0 : 1)' \
  "$DEAD_HOST" "$DEAD_PORT"; then
  say "something listens on $DEAD_HOST:$DEAD_PORT; the dead destination must refuse"; exit 1
fi

start_server || exit 1
wait_api || { say "admin API did not answer"; exit 1; }
measure empty || { report; exit 1; }

say "[fill] $Q messages to dead.test over $FILL_C sessions into serve --hold"
stop_server
rm -rf "$DATA"
start_server --hold || exit 1
inject "$Q" "$FILL_C" rcpt@dead.test "$FILL_MAX_S" "$WORKDIR/fill.src"
R[fill.inject_s]=$INJ_S
R[fill.inject_rate]=$(rate "$INJ_N" "$INJ_S")
R[fill.injected]=$INJ_N
[ "$INJ_OK" = 1 ] || say "[fill] injection had errors (see $WORKDIR/fill.src.err)"
say "[fill]     accepted in ${INJ_S}s (${R[fill.inject_rate]} msg/s); restarting without --hold"
t_drain=$(now)
stop_server
R[fill.hold_stop_s]=$STOP_S
start_server || exit 1
R[fill.start_s]=$START_S
wait_api || { say "admin API did not answer"; exit 1; }
drained=0
for ((i = 0; i < DRAIN_MAX_S / 5 + 1; i++)); do
  t_poll=$(now)
  counts=$(queue_counts) || counts="? ? ? ?"
  [ -n "${t_first:-}" ] || t_first=$t_poll
  # each poll lists the whole queue: wait at least 5 times as long as it took
  poll_s=$(awk -v d="$(since "$t_poll")" 'BEGIN { s = 5 * d; printf "%.1f", (s > 5 ? s : 5) }')
  read -r cat routing pre dead <<<"$counts"
  say "[fill]     $(since "$t_drain")s: awaiting directory lookup $cat, to be routed $routing, pre-submission $pre, $DEAD_QUEUE $dead"
  if [ "$cat" = 0 ] && [ "$routing" = 0 ] && [ "$pre" = 0 ] && [[ $dead =~ ^[0-9]+$ ]] && [ "$dead" -ge "$Q" ]; then
    drained=1; break
  fi
  [ "$(awk -v a="$(since "$t_drain")" -v m="$DRAIN_MAX_S" 'BEGIN { print (a > m) }')" = 1 ] && break
  alive "$SRV_PID" || { say "server died"; exit 1; }
  sleep "$poll_s"
done
R[fill.drain_s]=$(since "$t_drain")
R[fill.dead]=$dead
# placement rate over the time the categorizer ran (from the first poll, i.e. after the restart)
R[fill.place_rate]=$(awk -v n="$dead" -v s="$(since "$t_first")" 'BEGIN { if (n ~ /^[0-9]+$/ && s > 0) printf "%.0f", n / s; else print "?" }')
if [ $drained = 1 ]; then
  say "[fill]     $dead messages in \"$DEAD_QUEUE\" ${R[fill.drain_s]}s after the restart"
else
  # The live.test mail of (a) would queue behind the categorizer's backlog: stop here.
  say "[fill]     not placed within DRAIN_MAX_S=${DRAIN_MAX_S}s ($dead in \"$DEAD_QUEUE\", about ${R[fill.place_rate]} msg/s); lower -q or raise DRAIN_MAX_S"
  R[fill.drain_s]="not done after ${R[fill.drain_s]}"
  report
  exit 1
fi
sleep "$SETTLE_S"
measure full || { report; exit 1; }
stop_server
R[full.final_stop_s]=$STOP_S

report
