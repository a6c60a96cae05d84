#!/usr/bin/env bash
# Soak run of the server side: `starttls serve` in front of an OpenSSL client for many sequential
# upgrades, then a crowd of TCP connections that never speak. It fails (exit 1) on any failed
# upgrade, on a thread count above the worker limit, on RSS that keeps growing, or when an honest
# client is not served again after the crowd is gone. Numbers, not timings, are judged.
#
#   bash bench/soak.sh            # 40,000 upgrades, 1,500 idle connections (a few minutes)
#   bash bench/soak.sh --quick    # the smoke form CI runs: 2,000 upgrades, 300 idle
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [ "${1:-}" = --quick ]; then UPGRADES=2000; IDLE=300; else UPGRADES=40000; IDLE=1500; fi
MAX_CONCURRENT=64

W=$(mktemp -d /tmp/starttls-soak.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
say() { printf '%s\n' "$*" >&2; }
fail() { echo "SOAK FAILED: $*"; exit 1; }

cargo build --quiet --release --bin starttls
cc -O2 -o "$W/openssl_bench" bench/openssl_bench.c -lssl -lcrypto
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=soak CA" \
    -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$W/server.key" -out "$W/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$W/san.cnf"
openssl x509 -req -in "$W/server.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
    -extfile "$W/san.cnf" -out "$W/server.pem" 2>/dev/null

# Room for the crowd on both ends (the server inherits the limit).
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$ROOT/target/release/starttls" serve --protocol smtp --listen 127.0.0.1:0 \
    --cert "$W/server.pem" --key "$W/server.key" --max-concurrent "$MAX_CONCURRENT" \
    --idle-timeout 30 > "$W/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 100); do grep -q '^serving' "$W/serve.log" && break; sleep 0.05; done
PORT=$(sed -n 's/^serving smtp on 127.0.0.1:\([0-9]*\) .*/\1/p' "$W/serve.log")
[ -n "$PORT" ] || fail "serve did not start: $(cat "$W/serve.log")"

threads() { awk '/^Threads:/ {print $2}' "/proc/$SERVE/status"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVE/status"; }

echo "# soak: starttls serve (--max-concurrent $MAX_CONCURRENT) against openssl_bench smtp-client"
"$W/openssl_bench" smtp-client "$PORT" "$W/ca.pem" 200 full >/dev/null \
    || fail "warm-up upgrades failed"
sleep 0.2
rss0=$(rss_kib); thr0=$(threads)
half=$((UPGRADES / 2))
say "upgrades: $UPGRADES sequential, in two halves"
out1=$("$W/openssl_bench" smtp-client "$PORT" "$W/ca.pem" "$half" full) \
    || fail "an upgrade failed in the first half"
sleep 0.2
rss1=$(rss_kib); thr1=$(threads)
out2=$("$W/openssl_bench" smtp-client "$PORT" "$W/ca.pem" "$half" full) \
    || fail "an upgrade failed in the second half"
sleep 0.2
rss2=$(rss_kib); thr2=$(threads)
echo "first half:  $out1"
echo "second half: $out2"
ok_lines=$(grep -c 'outcome=ok' "$W/serve.log" || true)
bad_lines=$(grep -vc -e 'outcome=ok' -e '^serving' "$W/serve.log" || true)
echo "serve log: $ok_lines sessions ok, $bad_lines other lines"
printf '%-28s %10s %10s %10s\n' "" "warm" "half" "end"
printf '%-28s %10s %10s %10s\n' "serve threads" "$thr0" "$thr1" "$thr2"
printf '%-28s %10s %10s %10s\n' "serve RSS (KiB)" "$rss0" "$rss1" "$rss2"
[ "$bad_lines" -eq 0 ] || fail "serve logged failures: $(grep -v -e 'outcome=ok' -e '^serving' "$W/serve.log" | head -3)"
[ "$ok_lines" -ge "$UPGRADES" ] || fail "only $ok_lines sessions logged for $UPGRADES upgrades"
[ "$thr2" -le 2 ] || fail "$thr2 threads left after every session ended"
# Flat: the second half may not add more than 4 MiB over the first (allocator noise).
[ $((rss2 - rss1)) -le 4096 ] || fail "RSS grew from $rss1 to $rss2 KiB in the second half"

say "idle crowd: $IDLE connections that never speak"
crowd=$(python3 - "$PORT" "$IDLE" "$SERVE" "$MAX_CONCURRENT" <<'EOF'
import resource, socket, sys, time
port, n, pid, limit = (int(a) for a in sys.argv[1:])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
socks = []
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    socks.append(s)
time.sleep(2)
peak = 0
for _ in range(10):
    with open(f"/proc/{pid}/status") as f:
        t = int(next(l for l in f if l.startswith("Threads:")).split()[1])
    peak = max(peak, t)
    time.sleep(0.1)
for s in socks:
    s.close()
print(peak)
EOF
)
echo "idle crowd of $IDLE: peak serve threads $crowd (limit $MAX_CONCURRENT workers + 1)"
[ "$crowd" -le $((MAX_CONCURRENT + 1)) ] || fail "$crowd threads for an idle crowd"
sleep 1
after=$("$W/openssl_bench" smtp-client "$PORT" "$W/ca.pem" 20 full) \
    || fail "an honest client was not served after the crowd left"
echo "after the crowd: $after"
echo "soak passed"
