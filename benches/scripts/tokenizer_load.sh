#!/usr/bin/env bash
# Start-up cost of each TOKENIZER_ENCODING: the proxy's own "Tokenizer loaded in N ms" line
# and its resident memory once /readyz is 200 (and, for comparison, with counting off).
# Usage: benches/scripts/tokenizer_load.sh [runs] > docs/tokenizer-load.json
# Needs target/release/zai-proxy (cargo build --release -p zai-proxy). Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
runs="${1:-3}"
bin=target/release/zai-proxy
echo "["
first=1
for enc in off cl100k_base glm4 glm5 auto; do
  for run in $(seq 1 "$runs"); do
    port=$((21000 + RANDOM % 8000))
    log=$(mktemp)
    counting=true; encoding=$enc
    if [ "$enc" = off ]; then counting=false; encoding=cl100k_base; fi
    start=$(date +%s%N)
    env -i PATH="$PATH" LISTEN_ADDR="127.0.0.1:$port" ZAI_TARGET_URL="http://127.0.0.1:9" \
      ZAI_API_KEY=load-test RATE_LIMIT_STATE_FILE= TOKEN_COUNTING_ENABLED=$counting \
      TOKENIZER_ENCODING=$encoding "$bin" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
      if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
      sleep 0.05
    done
    ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    loaded_ms=$(grep -o 'Tokenizer loaded in [0-9]* ms' "$log" | grep -o '[0-9]*' || echo null)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -f "$log"
    [ $first = 1 ] || echo ","
    first=0
    printf '  {"encoding":"%s","run":%d,"tokenizer_loaded_ms":%s,"ready_ms":%d,"rss_kb":%d}' \
      "$enc" "$run" "${loaded_ms:-null}" "$ready_ms" "$rss_kb"
  done
done
echo
echo "]"
