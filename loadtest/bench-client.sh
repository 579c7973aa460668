#!/usr/bin/env bash
# Compares meridian-load --closed with wrk -t1 -c64 against nginx (return 200 "hello") and against
# meridian-mock's GET /static, rounds interleaved (wrk, load, wrk, load, ...). Loopback only.
# usage: loadtest/bench-client.sh BUILD_DIR [ROUNDS] [SECONDS]
set -euo pipefail
build=${1:?build dir}; rounds=${2:-3}; secs=${3:-5}
load=$build/loadtest/meridian-load; mock=$build/loadtest/meridian-mock
work=$(mktemp -d /tmp/meridian-bench.XXXX); mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $work/nginx.pid; error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:18081; location / { return 200 "hello"; } } }
CONF
nginx -c "$work/nginx.conf" -p "$work"
"$mock" llm --listen 127.0.0.1:18082 > "$work/mock.log" 2>&1 & mockpid=$!
cleanup() { kill "$mockpid" 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; }
trap cleanup EXIT
sleep 0.5
# Besides req/s (which on a shared 2-core box is noisy), report client CPU per request (user+sys), which
# is what decides who saturates the server first.
cpu_run() {  # prints "<req/s> <client cpu us per request>"
  local out; out=$( { /usr/bin/time -f "CPU %U %S" "$@"; } 2>&1 )
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2} /Request throughput/ {print $4}')
  local cpu; cpu=$(echo "$out" | awk '/^CPU/ {print $2+$3}')
  awk -v r="$rps" -v c="$cpu" -v s="$secs" 'BEGIN { printf "%.0f req/s, %.2f us CPU/req", r, (r > 0 ? c * 1e6 / (r * s) : 0) }'
}
for target in "nginx http://127.0.0.1:18081/" "mock http://127.0.0.1:18082/static"; do
  set -- $target
  for r in $(seq 1 "$rounds"); do
    w=$(cpu_run wrk -t1 -c64 -d${secs}s "$2")
    m=$(cpu_run "$load" --url "$2" --closed --connections 64 --threads 1 --duration ${secs}s --progress off)
    echo "$1 round $r | wrk: $w | meridian-load: $m"
  done
done
