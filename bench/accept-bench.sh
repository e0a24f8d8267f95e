#!/usr/bin/env bash
# Acceptance benchmark (issue: receive path): Postfix's smtp-source into a private Postfix
# and into Bridgehead in the same run, 20,000 messages of 4 KB over 50 connections, using
# the shared relay harness. Prints accepted messages/s for both, their ratio and peak RSS.
# Bridgehead acknowledges with fsync'd acceptance. Until remote delivery exists the relay
# column for Bridgehead is NA; only the accept column is compared here.
#   N=20000 C=50 S=4096 bench/accept-bench.sh
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
harness=${RELAY_BENCH:-$here/../shared/bench/relay-bench.sh}
[ -x "$harness" ] || harness="bash $harness"
[ -f "$here/dist/src/cli/main.js" ] || (cd "$here" && npx tsc -p .)
export N=${N:-20000} C=${C:-50} S=${S:-4096}
export STALL_S=${STALL_S:-3} WORKDIR=${WORKDIR:-/tmp/bridgehead-accept-bench}
export BRIDGEHEAD_CMD="exec bash $here/bench/bridgehead-target.sh"
# Hold the queues: this measures acceptance alone (fsync'd spool + queue rows).
export BRIDGEHEAD_ARGS=${BRIDGEHEAD_ARGS:---hold}
out=$($harness "$@" postfix bridgehead 2>/dev/null)
echo "$out"
echo "$out" | awk '
  !/^#/ && NF == 5 { name[$1] = $1; acc[$1] = $2; rss[$1] = $5 }
  END {
    p = acc["postfix"]; b = acc["bridgehead"]
    printf "accept msgs/s: postfix %s  bridgehead %s", p, b
    if (p > 0 && b > 0) printf "  ratio %.2f", b / p
    printf "\npeak RSS MB:   postfix %s  bridgehead %s\n", rss["postfix"], rss["bridgehead"]
  }'
