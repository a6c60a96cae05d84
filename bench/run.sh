#!/usr/bin/env bash
# The benchmark suite: the library side by side with OpenSSL on this machine, in one run,
# medians over repetitions, reported as ratios. Not part of the tests' pass/fail.
#
#   bash bench/run.sh            # the full run (a few minutes)
#   bash bench/run.sh --quick    # a smoke run: every measurement once, small sizes
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=${1:-}
if [ "$QUICK" = --quick ]; then
    REPS=1; N_FULL=40; N_RESUMED=60; MIB=32; MEM_N=100; DELAY=10; DATA_MIB=32
else
    REPS=5; N_FULL=400; N_RESUMED=800; MIB=1024; MEM_N=1000; DELAY=25; DATA_MIB=512
fi

W=$(mktemp -d /tmp/starttls-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT

say() { printf '%s\n' "$*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
field() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do ss -ltn "sport = :$1" | grep -q LISTEN && return 0; sleep 0.05; done; return 1; }

say "building (release)"
cargo build --quiet --release --lib --bins
cargo bench --quiet --bench starttls --no-run 2>/dev/null
BENCH=(cargo bench --quiet --bench starttls --)
STARTTLS=$ROOT/target/release/starttls
mkdir -p "$W/lib"
ln -sf "$ROOT/target/release/libstarttls.so" "$W/lib/libstarttls.so"
ln -sf "$ROOT/target/release/libstarttls.so" "$W/lib/libstarttls.so.0"
cc -O2 -o "$W/openssl_bench" bench/openssl_bench.c -lssl -lcrypto
cc -O2 -I include -o "$W/c_abi_bulk" bench/c_abi_bulk.c -L"$W/lib" -Wl,-rpath,"$W/lib" -lstarttls

# One ECDSA P-256 certificate for every server, ours and OpenSSL's.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$W/server.key" -out "$W/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$W/san.cnf"
openssl x509 -req -in "$W/server.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
    -extfile "$W/san.cnf" -out "$W/server.pem" 2>/dev/null
CERT=$W/server.pem KEY=$W/server.key CA=$W/ca.pem

echo "# starttls benchmarks ($(date -u +%Y-%m-%dT%H:%MZ))"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name.*: //p' /proc/cpuinfo | head -1)"
echo "$($STARTTLS --version), crypto $(sed -n 's/^default = \[\"\([^\"]*\)\".*/\1/p' Cargo.toml); $(openssl version)"
echo "medians of $REPS runs; ratios are starttls / OpenSSL (higher is better for rates)"

# --- 1. upgrades per second --------------------------------------------------------------
say "upgrades"
declare -A R
for rep in $(seq "$REPS"); do
    R[rust_full]+="$("${BENCH[@]}" upgrades "$CERT" "$KEY" "$CA" "$N_FULL" full 1 | field rate) "
    R[rust_resumed]+="$("${BENCH[@]}" upgrades "$CERT" "$KEY" "$CA" "$N_RESUMED" resumed 1 | field rate) "
    port=$(free_port)
    "$W/openssl_bench" smtp-server "$port" "$CERT" "$KEY" >/dev/null &
    srv=$!
    wait_port "$port"
    R[ossl_full]+="$("$W/openssl_bench" smtp-client "$port" "$CA" "$N_FULL" full | field rate) "
    R[ossl_resumed]+="$("$W/openssl_bench" smtp-client "$port" "$CA" "$N_RESUMED" resumed | field rate) "
    kill "$srv"; wait "$srv" 2>/dev/null || true
done
m() { tr ' ' '\n' <<<"${R[$1]}" | grep -v '^$' | median; }
echo
echo "## 1. SMTP STARTTLS upgrades per second (connect, greeting, EHLO, STARTTLS, TLS 1.3, EHLO, QUIT)"
printf '%-34s %12s %12s %8s\n' "" "starttls" "OpenSSL" "ratio"
printf '%-34s %12s %12s %8s\n' "full handshakes, sequential" "$(m rust_full)" "$(m ossl_full)" "$(ratio "$(m rust_full)" "$(m ossl_full)")"
printf '%-34s %12s %12s %8s\n' "resumed sessions, sequential" "$(m rust_resumed)" "$(m ossl_resumed)" "$(ratio "$(m rust_resumed)" "$(m ossl_resumed)")"

# --- 6. the server side ---------------------------------------------------------------------
# The same OpenSSL client against `starttls serve` and against the OpenSSL SMTP sink; then each
# library on both ends (the library's client against serve, OpenSSL's client against OpenSSL's).
say "server side"
declare -A S
for rep in $(seq "$REPS"); do
    port=$(free_port)
    "$STARTTLS" serve --protocol smtp --listen "127.0.0.1:$port" --cert "$CERT" --key "$KEY" >/dev/null &
    srv=$!
    wait_port "$port"
    S[serve_up]+="$("$W/openssl_bench" smtp-client "$port" "$CA" "$N_FULL" full | field rate) "
    S[serve_data]+="$("$W/openssl_bench" smtp-data "$port" "$CA" "$DATA_MIB" | field mib_per_s) "
    S[both_data]+="$("${BENCH[@]}" smtp-data "$port" "$CA" "$DATA_MIB" | field mib_per_s) "
    kill "$srv"; wait "$srv" 2>/dev/null || true
    port=$(free_port)
    "$W/openssl_bench" smtp-server "$port" "$CERT" "$KEY" >/dev/null &
    srv=$!
    wait_port "$port"
    S[ossl_up]+="$("$W/openssl_bench" smtp-client "$port" "$CA" "$N_FULL" full | field rate) "
    S[ossl_data]+="$("$W/openssl_bench" smtp-data "$port" "$CA" "$DATA_MIB" | field mib_per_s) "
    kill "$srv"; wait "$srv" 2>/dev/null || true
done
ms() { tr ' ' '\n' <<<"${S[$1]}" | grep -v '^$' | median; }
echo
echo "## 6. The server side: OpenSSL's client against starttls serve and against an OpenSSL SMTP sink"
printf '%-46s %12s %12s %8s\n' "" "serve" "OpenSSL" "ratio"
printf '%-46s %12s %12s %8s\n' "SMTP STARTTLS upgrades/s (full handshakes)" "$(ms serve_up)" "$(ms ossl_up)" "$(ratio "$(ms serve_up)" "$(ms ossl_up)")"
printf '%-46s %12s %12s %8s\n' "SMTP DATA MiB/s ($DATA_MIB MiB message)" "$(ms serve_data)" "$(ms ossl_data)" "$(ratio "$(ms serve_data)" "$(ms ossl_data)")"
echo "both ends: the library's client against serve / OpenSSL's client against OpenSSL's sink"
printf '%-46s %12s %12s %8s\n' "SMTP DATA MiB/s, both ends" "$(ms both_data)" "$(ms ossl_data)" "$(ratio "$(ms both_data)" "$(ms ossl_data)")"
echo "(upgrades with the library on both ends: section 1, full handshakes)"

# --- 7. system calls per upgrade -------------------------------------------------------------
# SMTP STARTTLS upgrades (greeting, EHLO, STARTTLS, TLS 1.3, EHLO, QUIT, close), each side traced
# on its own over 20 upgrades against the other library's peer, the same dialog for both
# libraries; only the calls that touch the socket, per upgrade.
if command -v strace >/dev/null; then
    say "system calls"
    CALLS=setsockopt,getsockopt,ioctl,fcntl,recvfrom,recvmsg,sendto,sendmsg,read,write,readv,writev,poll,ppoll,connect,accept,accept4,shutdown
    SC_N=20
    count() { awk -v n="$SC_N" '$NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $4 ~ /^[0-9]+$/ {
        c[$NF] = $4; t += $4} END {printf "%.1f ", t / n; for (k in c) printf " %s=%.1f", k, c[k] / n; printf "\n"}' "$1"; }
    trace_server() { # trace_server OUT COMMAND...: the server's calls for SC_N OpenSSL client upgrades
        local out=$1 port pid; shift
        port=$(free_port)
        "$@" "$port" >/dev/null 2>&1 &
        pid=$!
        wait_port "$port"
        strace -f -c -e trace=$CALLS -o "$out" -p "$pid" 2>/dev/null &
        local tracer=$!
        sleep 0.5
        "$W/openssl_bench" smtp-client "$port" "$CA" $((SC_N - 1)) full >/dev/null
        sleep 0.3
        kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
        kill "$pid"; wait "$pid" 2>/dev/null || true
    }
    trace_server "$W/srv-ours" sh -c "exec \"$STARTTLS\" serve --protocol smtp --cert \"$CERT\" --key \"$KEY\" --listen 127.0.0.1:\$0"
    trace_server "$W/srv-ossl" sh -c "exec \"$W/openssl_bench\" smtp-server \$0 \"$CERT\" \"$KEY\""
    port=$(free_port)
    "$W/openssl_bench" smtp-server "$port" "$CERT" "$KEY" >/dev/null &
    srv=$!
    wait_port "$port"
    bench_exe=$ROOT/$(cargo bench --bench starttls --no-run 2>&1 | grep -o 'target/release/deps/starttls-[0-9a-f]*' | head -1)
    strace -f -c -e trace=$CALLS -o "$W/cli-ours" "$bench_exe" client-upgrades "$port" "$CA" "$SC_N" >/dev/null || true
    strace -f -c -e trace=$CALLS -o "$W/cli-ossl" "$W/openssl_bench" smtp-client "$port" "$CA" $((SC_N - 1)) full >/dev/null || true
    kill "$srv"; wait "$srv" 2>/dev/null || true
    echo
    echo "## 7. System calls per SMTP STARTTLS upgrade (mean of $SC_N), one side traced at a time, socket calls only"
    printf '%-16s %s\n' "client, ours" "$(count "$W/cli-ours")"
    printf '%-16s %s\n' "client, OpenSSL" "$(count "$W/cli-ossl")"
    printf '%-16s %s\n' "server, ours" "$(count "$W/srv-ours")"
    printf '%-16s %s\n' "server, OpenSSL" "$(count "$W/srv-ossl")"
else
    say "system calls SKIPPED: strace is not installed"
fi

# --- 5. concurrency ------------------------------------------------------------------------
say "concurrency"
one=() two=()
for rep in $(seq "$REPS"); do
    one+=("$("${BENCH[@]}" upgrades "$CERT" "$KEY" "$CA" "$N_FULL" full 1 | field rate)")
    two+=("$("${BENCH[@]}" upgrades "$CERT" "$KEY" "$CA" "$N_FULL" full 2 | field rate)")
done
m1=$(printf '%s\n' "${one[@]}" | median); m2=$(printf '%s\n' "${two[@]}" | median)
echo
echo "## 5. Concurrency: full upgrades per second, one shared config (client and server share the $(nproc) cores)"
printf '%-34s %12s\n' "1 client thread" "$m1"
printf '%-34s %12s   (%sx of 1 thread)\n' "2 client threads" "$m2" "$(ratio "$m2" "$m1")"

# --- 2. bulk throughput --------------------------------------------------------------------
say "bulk"
echo
echo "## 2. Bulk throughput, MiB/s ($MIB MiB per run)"
echo "(every TLS sender writes to a receiver in another process: the Rust API and the C ABI to the"
echo " same Rust sink, OpenSSL to its own; plain TCP is one process, sender and receiver threads)"
printf '%-12s %10s %10s %10s %10s %14s %12s %12s\n' "write size" "Rust API" "C ABI" "OpenSSL" "plain TCP" "Rust/OpenSSL" "C ABI/Rust" "Rust/TCP"
for kib in 16 64; do
    rust=() cabi=() ossl=() tcp=()
    for rep in $(seq "$REPS"); do
        tcp+=("$("${BENCH[@]}" bulk "$CERT" "$KEY" "$CA" "$MIB" "$kib" tcp | field mib_per_s)")
        port=$(free_port)
        "${BENCH[@]}" sink "$port" "$CERT" "$KEY" >/dev/null &
        wait_port "$port"
        rust+=("$("${BENCH[@]}" sink-client "$port" "$CA" "$MIB" "$kib" | field mib_per_s)")
        wait
        port=$(free_port)
        "${BENCH[@]}" sink "$port" "$CERT" "$KEY" >/dev/null &
        wait_port "$port"
        cabi+=("$("$W/c_abi_bulk" "$port" "$CA" "$MIB" "$kib" | field mib_per_s)")
        wait
        port=$(free_port)
        "$W/openssl_bench" bulk-server "$port" "$CERT" "$KEY" >/dev/null &
        wait_port "$port"
        ossl+=("$("$W/openssl_bench" bulk-client "$port" "$CA" "$MIB" "$kib" | field mib_per_s)")
        wait
    done
    r=$(printf '%s\n' "${rust[@]}" | median); c=$(printf '%s\n' "${cabi[@]}" | median)
    o=$(printf '%s\n' "${ossl[@]}" | median); t=$(printf '%s\n' "${tcp[@]}" | median)
    printf '%-12s %10s %10s %10s %10s %14s %12s %12s\n' "${kib} KiB" "$r" "$c" "$o" "$t" "$(ratio "$r" "$o")" "$(ratio "$c" "$r")" "$(ratio "$r" "$t")"
    echo "  runs: Rust ${rust[*]} | C ABI ${cabi[*]} | OpenSSL ${ossl[*]}"
done

# --- 2b. the crypto provider ---------------------------------------------------------------
if [ "$QUICK" != --quick ]; then
    say "provider: ring"
    RING=(env CARGO_TARGET_DIR="$ROOT/target/ring" cargo bench --quiet --bench starttls
          --no-default-features --features ring,cli --)
    aws=() ring=()
    for rep in $(seq "$REPS"); do
        aws+=("$("${BENCH[@]}" bulk "$CERT" "$KEY" "$CA" "$MIB" 64 tls | field mib_per_s)")
        ring+=("$("${RING[@]}" bulk "$CERT" "$KEY" "$CA" "$MIB" 64 tls | field mib_per_s)")
    done
    a=$(printf '%s\n' "${aws[@]}" | median); r=$(printf '%s\n' "${ring[@]}" | median)
    fa=$("${BENCH[@]}" upgrades "$CERT" "$KEY" "$CA" "$N_FULL" full 1 | field rate)
    fr=$("${RING[@]}" upgrades "$CERT" "$KEY" "$CA" "$N_FULL" full 1 | field rate)
    echo
    echo "## 2b. rustls crypto provider (the library's default is aws-lc-rs)"
    printf '%-34s %12s %12s %8s\n' "" "aws-lc-rs" "ring" "ratio"
    printf '%-34s %12s %12s %8s\n' "bulk MiB/s, 64 KiB writes" "$a" "$r" "$(ratio "$a" "$r")"
    printf '%-34s %12s %12s %8s\n' "full upgrades per second" "$fa" "$fr" "$(ratio "$fa" "$fr")"
fi

# --- 4. memory per idle connection ---------------------------------------------------------
say "memory"
mem() { # mem CLIENT-COMMAND...: one server for MEM_N+1 connections, then the client
    local port
    port=$(free_port)
    "$STARTTLS" serve --protocol tls --listen "127.0.0.1:$port" --cert "$CERT" --key "$KEY" \
        --max-connections $((MEM_N + 1)) --max-concurrent $((MEM_N + 1)) >/dev/null &
    wait_port "$port"
    "$@" "$port" | field per_connection_kib
    kill %% 2>/dev/null || true
    wait 2>/dev/null || true
}
ours=$(mem sh -c "cargo bench --quiet --bench starttls -- memory \"\$0\" $CA $MEM_N")
plain=$(mem sh -c "$W/openssl_bench memory \"\$0\" $CA $MEM_N plain")
release=$(mem sh -c "$W/openssl_bench memory \"\$0\" $CA $MEM_N release")
echo
echo "## 4. Client memory per idle upgraded connection ($MEM_N connections, 64 KiB written on each), KiB"
printf '%-44s %8s\n' "starttls (rustls)" "$ours"
printf '%-44s %8s\n' "OpenSSL" "$plain"
printf '%-44s %8s\n' "OpenSSL with SSL_MODE_RELEASE_BUFFERS" "$release"

# --- 3. round trips to a secure channel ----------------------------------------------------
say "round trips"
echo
echo "## 3. Turns to a secure channel: waits on the server (greeting included) before the client's TLS Finished"
echo "(counted by a relay adding ${DELAY} ms each way; the time includes each client's process start-up)"
printf '%-10s %-22s %10s %6s\n' "protocol" "client" "time (ms)" "turns"
relay_turns() { # relay_turns PROTOCOL CLIENT-NAME TARGET-PORT SHELL-COMMAND (reads $PORT)
    local proto=$1 name=$2 target=$3 cmd=$4 rport relay out
    rport=$(free_port)
    "${BENCH[@]}" relay "$rport" "$target" "$DELAY" 1 > "$W/relay.out" &
    relay=$!
    wait_port "$rport"
    PORT=$rport CA=$CA STARTTLS=$STARTTLS timeout 30 bash -c "$cmd" >/dev/null 2>&1 </dev/null || true
    wait "$relay" 2>/dev/null || true
    out=$(grep '^relay to_secure' "$W/relay.out" || true)
    printf '%-10s %-22s %10s %6s\n' "$proto" "$name" "$(field to_secure_ms <<<"$out")" "$(field turns <<<"$out")"
}
rtt() { # rtt PROTOCOL CLIENT-NAME SHELL-COMMAND: against a one-connection `starttls serve`
    local proto=$1 name=$2 cmd=$3 sport serve
    sport=$(free_port)
    "$STARTTLS" serve --protocol "$proto" --listen "127.0.0.1:$sport" --cert "$CERT" --key "$KEY" \
        --max-connections 1 >/dev/null 2>&1 &
    serve=$!
    wait_port "$sport"
    relay_turns "$proto" "$name" "$sport" "$cmd"
    kill "$serve" 2>/dev/null || true
    wait "$serve" 2>/dev/null || true
}
for proto in smtp imap pop3 nntp ftp xmpp sieve ldap postgres; do
    rtt "$proto" "starttls check" '"$STARTTLS" check --ca-file "$CA" '"$proto"'://localhost:$PORT'
    rtt "$proto" "openssl s_client" 'openssl s_client -starttls '"$proto"' -connect 127.0.0.1:$PORT -CAfile "$CA" -xmpphost localhost -brief'
done
for proto in smtp imap pop3; do
    rtt "$proto" "curl --ssl-reqd" 'curl -sS --ssl-reqd --cacert "$CA" -u u:p '"$proto"'://localhost:$PORT/ --mail-from a@x --mail-rcpt b@x -T /dev/null'
done
rtt smtp "python smtplib" 'python3 -W ignore -c "import os,ssl,smtplib; s=smtplib.SMTP(\"localhost\",int(os.environ[\"PORT\"])); s.starttls(context=ssl.create_default_context(cafile=os.environ[\"CA\"])); s.quit()"'
rtt imap "python imaplib" 'python3 -W ignore -c "import os,ssl,imaplib; m=imaplib.IMAP4(\"localhost\",int(os.environ[\"PORT\"])); m.starttls(ssl_context=ssl.create_default_context(cafile=os.environ[\"CA\"])); m.logout()"'
rtt pop3 "python poplib" 'python3 -W ignore -c "import os,ssl,poplib; p=poplib.POP3(\"localhost\",int(os.environ[\"PORT\"])); p.stls(context=ssl.create_default_context(cafile=os.environ[\"CA\"])); p.quit()"'

# A real PostgreSQL (stock settings: ssl_ecdh_curve prime256v1, so a client whose first key share
# is not P-256 pays a HelloRetryRequest). Needs root to run it as the postgres user.
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$PG_BIN" ] && [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    pg=$W/pg pgport=$(free_port)
    mkdir -p "$pg" && chmod 711 "$W" && cp "$CERT" "$KEY" "$pg/" && chown -R postgres "$pg"
    chmod 600 "$pg/server.key"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$pg/data" -A trust >"$pg/initdb.log" 2>&1
    printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" \
        "$pgport" "$pg" "$pg/server.pem" "$pg/server.key" >> "$pg/data/postgresql.conf"
    runuser -u postgres -- "$PG_BIN/postgres" -D "$pg/data" >"$pg/log" 2>&1 &
    pgpid=$!
    if wait_port "$pgport"; then
        pgname="PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}')"
        echo "(against a real $pgname, ssl_ecdh_curve = $(runuser -u postgres -- "$PG_BIN/postgres" -D "$pg/data" -C ssl_ecdh_curve 2>/dev/null || echo '?'))"
        relay_turns postgres "starttls check" "$pgport" '"$STARTTLS" check --ca-file "$CA" postgres://localhost:$PORT'
        relay_turns postgres "openssl s_client" "$pgport" 'openssl s_client -starttls postgres -connect 127.0.0.1:$PORT -CAfile "$CA" -brief'
        relay_turns postgres "psql (libpq)" "$pgport" 'PGGSSENCMODE=disable PGSSLMODE=verify-full PGSSLROOTCERT="$CA" psql -h localhost -p $PORT -U postgres -c "select 1" postgres'
    else
        echo "(PostgreSQL did not start: $(tail -n 3 "$pg/log" | tr '\n' ' '))"
    fi
    kill "$pgpid" 2>/dev/null || true
    wait "$pgpid" 2>/dev/null || true
else
    echo "(no PostgreSQL row: needs the postgresql package and root)"
fi
