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
trap 'kill $mockpid 2>/dev/null; kill $(cat $work/nginx.pid) 2>/dev/null' EXIT
sleep 0.5
for target in "nginx http://127.0.0.1:18081/" "mock http://127.0.0.1:18082/static"; do
  set -- $target
  for r in $(seq 1 "$rounds"); do
    w=$(wrk -t1 -c64 -d${secs}s "$2" | awk '/Requests\/sec/ {print $2}')
    m=$("$load" --url "$2" --closed --connections 64 --threads 1 --duration ${secs}s --progress off \
          | awk '/Request throughput/ {print $4}')
    echo "$1 round $r wrk=$w meridian-load=$m"
  done
done
