#!/usr/bin/env bash
# Scale-out check (docs/serve.md): two `sdpal serve` instances behind nginx on loopback. Starts
# both and an nginx with a throw-away configuration (no root needed), sends generations through
# nginx, and checks from the instances' request logs that each served some and nothing failed.
#   scripts/serve-nginx-check.sh [requests]      (needs Debian's nginx and a built build/sdpal)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sdpal="$root/build/sdpal"
requests="${1:-8}"
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx_bin" ] || { echo "nginx not found (apt-get install nginx-light)"; exit 2; }
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p1=$(free_port); p2=$(free_port); pf=$(free_port)
"$sdpal" serve --port "$p1" -t 1 --log-format json 2>"$work/a.log" & pids+=($!)
"$sdpal" serve --port "$p2" -t 1 --log-format json 2>"$work/b.log" & pids+=($!)
mkdir -p "$work/tmp"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
daemon on;
events { worker_connections 256; }
http {
  access_log $work/nginx-access.log;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  upstream sdpal {
    least_conn;
    server 127.0.0.1:$p1 max_fails=0;
    server 127.0.0.1:$p2 max_fails=0;
  }
  server {
    listen 127.0.0.1:$pf;
    client_max_body_size 32m;
    location / {
      proxy_pass http://sdpal;
      proxy_read_timeout 600s;
      proxy_next_upstream error http_503 non_idempotent;
      proxy_next_upstream_tries 2;
    }
  }
}
CONF
for port in "$p1" "$p2"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
done
"$nginx_bin" -c "$work/nginx.conf" -e "$work/nginx-error.log"
curl -sf "http://127.0.0.1:$pf/health" >/dev/null
fail=0
curls=()
for i in $(seq "$requests"); do
  curl -sf "http://127.0.0.1:$pf/sdapi/v1/txt2img" -H 'Content-Type: application/json' \
    -d "{\"prompt\":\"a dress\",\"seed\":$i,\"steps\":4}" -o "$work/r$i.json" &
  curls+=($!)
done
for c in "${curls[@]}"; do wait "$c" || fail=1; done
for i in $(seq "$requests"); do
  python3 -c "import json,sys; d=json.load(open('$work/r$i.json')); assert len(d['images'])==1" \
    || { echo "request $i: bad response"; fail=1; }
done
a=$(grep -c '"path":"/sdapi/v1/txt2img","status":200' "$work/a.log" || true)
b=$(grep -c '"path":"/sdapi/v1/txt2img","status":200' "$work/b.log" || true)
echo "nginx on 127.0.0.1:$pf -> instance :$p1 served $a, instance :$p2 served $b of $requests"
[ "$fail" -eq 0 ] && [ "$a" -gt 0 ] && [ "$b" -gt 0 ] && [ $((a + b)) -eq "$requests" ] \
  && echo "ok: both instances served, every request answered once" \
  || { echo "FAILED"; exit 1; }
