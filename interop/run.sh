#!/usr/bin/env bash
# Interoperability suite: real third-party servers and clients on loopback.
#
# Installs the Debian packages it needs (as root, non-interactively), writes every config and
# certificate into a scratch folder, starts each server as a plain process on a fixed high
# loopback port, waits until it listens, runs the library's client (the `starttls` command, the
# C examples, the Python wrapper, the Rust examples) against every server and real clients
# against the library's server (`starttls serve`), prints a matrix and exits non-zero if any
# expected pass failed. It stops exactly the processes it started.
#
#   bash interop/run.sh            (from the repository; builds what it needs)
#
# The scratch folder is removed after a run in which everything passed, and kept (its path is
# printed) otherwise, or always with STARTTLS_INTEROP_KEEP=1.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/starttls-interop.XXXXXX)
chmod 755 "$W"
PIDS=()
RESULTS=()
FAILED=0
START=$(date +%s)
IPV6=$(ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1' && echo yes || true)

log() { printf '[interop %3ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    done
    sleep 1
    for pid in "${PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    done
    # A clean run leaves nothing behind; anything else keeps the servers' logs for a look.
    if [ "${FINISHED:-0}" = 1 ] && [ "$FAILED" -eq 0 ] && [ -z "${STARTTLS_INTEROP_KEEP:-}" ]; then
        rm -rf "$W"
    else
        log "configs and logs kept in $W"
    fi
}
trap cleanup EXIT

# --- packages -----------------------------------------------------------------------------
install_packages() {
    if [ "$(id -u)" != 0 ]; then
        log "not root: cannot install packages; using what is installed"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    debconf-set-selections <<'EOF'
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string localhost.localdomain
slapd slapd/no_configuration boolean true
proftpd-basic shared/proftpd/inetd_or_standalone select standalone
dovecot-core dovecot-core/create-ssl-cert boolean false
EOF
    local pkgs="postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-managesieved
        dovecot-sieve dovecot-submissiond slapd ldap-utils proftpd-core proftpd-mod-crypto prosody
        lua-sec inn2 postgresql gnutls-bin swaks libnet-ssleay-perl curl openssl iproute2
        knot unbound socat mariadb-server mariadb-client testssl.sh"
    log "installing packages"
    apt-get update -q >"$W/apt.log" 2>&1
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $pkgs >>"$W/apt.log" 2>&1 || true
    if [ -f /etc/news/inn.conf ] && ! grep -q '^domain:' /etc/news/inn.conf; then
        echo 'domain: localdomain' >> /etc/news/inn.conf   # inn2's postinst needs a domain
    fi
    dpkg --configure -a >>"$W/apt.log" 2>&1 || true
}

# --- build --------------------------------------------------------------------------------
build() {
    log "building the command, the library and the C examples"
    (cd "$ROOT" && cargo build --quiet --release --bins --lib --examples) || { log "build failed"; exit 1; }
    BIN="$ROOT/target/release/starttls"
    LIB="$ROOT/target/release"
    mkdir -p "$W/lib" "$W/c"
    ln -sf "$LIB/libstarttls.so" "$W/lib/libstarttls.so"
    ln -sf "$LIB/libstarttls.so" "$W/lib/libstarttls.so.0"
    for ex in smtp_client imap_client imap_idle fd_upgrade; do
        cc -std=c99 -Wall -Wextra -Werror -I"$ROOT/include" "$ROOT/examples-c/$ex.c" \
            -L"$W/lib" -Wl,-rpath,"$W/lib" -lstarttls -o "$W/c/$ex" || { log "cc $ex failed"; exit 1; }
    done
}

# --- certificates -------------------------------------------------------------------------
make_certs() {
    cd "$W" || exit 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=starttls interop CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout server.key -out server.csr 2>/dev/null
    # libldap checks the machine's host name when the URI says localhost: name it too.
    # The MX and MTA-STS names of the DNSSEC bed's domains (starttls mx) are on it too.
    printf 'subjectAltName=DNS:localhost,DNS:%s,IP:127.0.0.1,IP:::1,DNS:mx.insecure.example,DNS:mta-sts.insecure.example,DNS:mta-sts.secure.example\n' \
        "$(hostname)" > san.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile san.cnf -out server.pem 2>/dev/null
    # slapd sends its CA too (a DANE-TA record names the CA, which the server must send).
    cat server.pem ca.pem > server-chain.pem
    chmod 644 server.key server.pem ca.pem server-chain.pem
    cd "$ROOT" || exit 1
}

# --- servers ------------------------------------------------------------------------------
# start NAME LOGFILE COMMAND...: runs COMMAND in its own process group.
start() {
    local name=$1 logfile=$2
    shift 2
    setsid "$@" >"$logfile" 2>&1 &
    PIDS+=("$!")
    eval "PID_$name=$!"
}

wait_port() {
    local name=$1 port=$2 logfile=$3
    for _ in $(seq 1 100); do
        if ss -ltn "sport = :$port" 2>/dev/null | grep -q LISTEN; then
            return 0
        fi
        sleep 0.1
    done
    log "SERVER FAILED TO START: $name (port $port); its log:"
    sed 's/^/    /' "$logfile" | tail -n 30
    RESULTS+=("$name|server start|FAIL")
    FAILED=$((FAILED + 1))
    return 1
}

start_postfix() {
    command -v postfix >/dev/null || { log "postfix not installed"; return 1; }
    local d=$W/postfix
    mkdir -p "$d/etc" "$d/queue" "$d/data"
    cp /etc/postfix/master.cf "$d/etc/"
    cat > "$d/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
myhostname = mx.localdomain
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
maillog_file = $d/maillog
maillog_file_prefixes = $W
smtpd_tls_cert_file = $W/server.pem
smtpd_tls_key_file = $W/server.key
smtpd_tls_security_level = may
smtpd_relay_restrictions = permit_mynetworks, reject
virtual_mailbox_domains = example.org
virtual_transport = lmtp:inet:127.0.0.1:10024
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:12345
EOF
    # Replace the default listener with three on high loopback ports.
    sed -i '/^smtp      inet/d' "$d/etc/master.cf"
    cat >> "$d/etc/master.cf" <<EOF
127.0.0.1:10025 inet n - n - - smtpd
127.0.0.1:10587 inet n - n - - smtpd -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
127.0.0.1:10465 inet n - n - - smtpd -o smtpd_tls_wrappermode=yes
EOF
    chown -R postfix:postfix "$d/data"
    postfix -c "$d/etc" check >"$d/check.log" 2>&1
    start postfix "$d/master.log" /usr/lib/postfix/sbin/master -c "$d/etc" -d
    wait_port postfix 10025 "$d/maillog"
}

start_dovecot() {
    command -v dovecot >/dev/null || { log "dovecot not installed"; return 1; }
    local d=$W/dovecot
    mkdir -p "$d/run" "$d/mail"
    chown mail:mail "$d/mail"
    cat > "$d/dovecot.conf" <<EOF
base_dir = $d/run
protocols = imap pop3 lmtp submission sieve
listen = 127.0.0.1$( [ -n "$IPV6" ] && echo ", ::1")
log_path = $d/dovecot.log
ssl = yes
ssl_cert = <$W/server.pem
ssl_key = <$W/server.key
disable_plaintext_auth = yes
# SCRAM-SHA-256 works from the static passdb's plaintext password (no -PLUS in 2.3); bearer
# tokens are checked by a tokeninfo endpoint on loopback (start_tokeninfo).
auth_mechanisms = plain login scram-sha-256 oauthbearer xoauth2
first_valid_uid = 8
mail_location = maildir:$d/mail/%u
hostname = localhost
submission_relay_host = 127.0.0.1
submission_relay_port = 10025
passdb {
  driver = static
  args = password=secret
  # "none": the lookups that authenticate nobody (LMTP delivery finds the user here).
  mechanisms = plain login scram-sha-256 none
}
passdb {
  driver = oauth2
  mechanisms = oauthbearer xoauth2
  args = $d/oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$d/mail/%u
}
service imap-login {
  inet_listener imap {
    port = 10143
  }
  inet_listener imaps {
    port = 10993
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 10110
  }
  inet_listener pop3s {
    port = 10995
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 10024
  }
}
service submission-login {
  inet_listener submission {
    port = 10588
  }
}
service managesieve-login {
  inet_listener sieve {
    port = 14190
  }
}
service auth {
  inet_listener {
    address = 127.0.0.1
    port = 12345
  }
}
EOF
    cat > "$d/oauth2.conf.ext" <<EOF
tokeninfo_url = http://127.0.0.1:18081/tokeninfo?access_token=
introspection_mode = get
introspection_url = http://127.0.0.1:18081/introspect?access_token=
username_attribute = email
EOF
    start_tokeninfo
    start dovecot "$d/out.log" dovecot -F -c "$d/dovecot.conf"
    wait_port dovecot 10143 "$d/out.log"
}

# An OAuth 2.0 tokeninfo endpoint for Dovecot on loopback: `good-token` is alice's, anything
# else gets the JSON error an authorization server sends.
start_tokeninfo() {
    cat > "$W/tokeninfo.py" <<'EOF'
import http.server, json
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        token = self.path.split("access_token=", 1)[-1]
        ok = token == "good-token"
        body = json.dumps({"email": "alice"} if ok else {"error": "invalid_token"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", 18081), Handler).serve_forever()
EOF
    start tokeninfo "$W/tokeninfo.log" python3 "$W/tokeninfo.py"
    wait_port tokeninfo 18081 "$W/tokeninfo.log"
}

start_slapd() {
    [ -x /usr/sbin/slapd ] || { log "slapd not installed"; return 1; }
    local d=$W/slapd
    mkdir -p "$d/db"
    cat > "$d/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $d/slapd.pid
TLSCACertificateFile $W/ca.pem
TLSCertificateFile $W/server-chain.pem
TLSCertificateKeyFile $W/server.key
database mdb
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw secret
directory $d/db
EOF
    start slapd "$d/out.log" /usr/sbin/slapd -d 0 -f "$d/slapd.conf" \
        -h "ldap://127.0.0.1:10389/ ldaps://127.0.0.1:10636/"
    wait_port slapd 10389 "$d/out.log"
}

start_proftpd() {
    command -v proftpd >/dev/null || { log "proftpd not installed"; return 1; }
    local d=$W/proftpd
    mkdir -p "$d/home"
    id ftptest >/dev/null 2>&1 || useradd -M -d "$d/home" -s /bin/sh ftptest
    usermod -d "$d/home" ftptest 2>/dev/null
    echo 'ftptest:secret123' | chpasswd
    echo "hello over protected FTP data" > "$d/home/hello.txt"
    chown -R ftptest "$d/home"
    for mode in explicit implicit; do
        local port=10021 extra="" passive="30000 30049"
        if [ $mode = implicit ]; then port=10990; extra="TLSOptions UseImplicitSSL"; passive="30050 30099"; fi
        cat > "$d/$mode.conf" <<EOF
ServerName "starttls interop ($mode)"
ServerType standalone
DefaultServer on
Port $port
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
PidFile $d/$mode.pid
ScoreboardFile $d/$mode.scoreboard
DelayTable $d/$mode.delay
SystemLog $d/$mode.system.log
WtmpLog off
RequireValidShell off
DefaultRoot ~
PassivePorts $passive
AuthOrder mod_auth_unix.c
<IfModule !mod_tls.c>
LoadModule mod_tls.c
</IfModule>
TLSEngine on
TLSRequired on
TLSLog $d/$mode.tls.log
TLSProtocol TLSv1.2 TLSv1.3
TLSECCertificateFile $W/server.pem
TLSECCertificateKeyFile $W/server.key
$extra
EOF
        start "proftpd_$mode" "$d/$mode.out" proftpd -n -c "$d/$mode.conf"
        wait_port "proftpd ($mode)" $port "$d/$mode.out"
    done
}

start_prosody() {
    command -v prosody >/dev/null || { log "prosody not installed"; return 1; }
    local d=$W/prosody
    mkdir -p "$d/data"
    cp "$W/server.pem" "$d/cert.pem"
    cp "$W/server.key" "$d/key.pem"
    cat > "$d/prosody.cfg.lua" <<EOF
pidfile = "$d/prosody.pid"
data_path = "$d/data"
daemonize = false
log = { info = "$d/prosody.log"; error = "$d/error.log" }
interfaces = { "127.0.0.1" }
c2s_ports = { 15222 }
c2s_direct_tls_ports = { 15223 }
s2s_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping" }
modules_disabled = { "s2s" }
c2s_require_encryption = true
authentication = "internal_hashed"
ssl = { certificate = "$d/cert.pem"; key = "$d/key.pem" }
VirtualHost "localhost"
  ssl = { certificate = "$d/cert.pem"; key = "$d/key.pem" }
EOF
    chown -R prosody:prosody "$d"
    runuser -u prosody -- prosodyctl --config "$d/prosody.cfg.lua" register alice localhost secret \
        >"$d/register.log" 2>&1
    start prosody "$d/out.log" runuser -u prosody -- prosody --config "$d/prosody.cfg.lua"
    wait_port prosody 15222 "$d/out.log"
}

start_inn() {
    [ -x /usr/lib/news/bin/nnrpd ] || { log "inn2 not installed"; return 1; }
    cp "$W/server.pem" /etc/news/interop-cert.pem
    cp "$W/server.key" /etc/news/interop-key.pem
    chown news:news /etc/news/interop-*.pem
    chmod 640 /etc/news/interop-key.pem
    sed -i 's|^#* *tlscertfile:.*|tlscertfile: /etc/news/interop-cert.pem|;
            s|^#* *tlskeyfile:.*|tlskeyfile: /etc/news/interop-key.pem|' /etc/news/inn.conf
    su news -s /bin/sh -c "/usr/lib/news/bin/makehistory -O -x" >/dev/null 2>&1
    start nnrpd "$W/nnrpd.log" /usr/lib/news/bin/nnrpd -D -f -b 127.0.0.1 -p 10119
    start nnrpds "$W/nnrpds.log" /usr/lib/news/bin/nnrpd -D -f -S -b 127.0.0.1 -p 10563
    wait_port nnrpd 10119 "$W/nnrpd.log"
    wait_port "nnrpd -S" 10563 "$W/nnrpds.log"
}

# MariaDB with TLS on 127.0.0.1:13306 (its own data folder, as root); user alice, password secret.
start_mariadb() {
    local d=$W/mariadb
    mkdir -p "$d"
    if ! command -v mariadbd >/dev/null; then
        log "mariadbd missing: MariaDB rows fail"
        RESULTS+=("MariaDB|server start|FAIL")
        FAILED=$((FAILED + 1))
        return 1
    fi
    mariadb-install-db --no-defaults --datadir="$d/data" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$d/install.log" 2>&1
    start mariadb "$d/log" mariadbd --no-defaults --datadir="$d/data" --user=root --port=13306 \
        --bind-address=127.0.0.1 --socket="$d/sock" --pid-file="$d/pid" --skip-log-bin \
        --ssl-cert="$W/server.pem" --ssl-key="$W/server.key" --ssl-ca="$W/ca.pem"
    wait_port mariadb 13306 "$d/log" || return 1
    mariadb --no-defaults -S "$d/sock" -u root -e \
        "CREATE USER 'alice'@'%' IDENTIFIED BY 'secret'; CREATE DATABASE mail;
         GRANT ALL ON mail.* TO 'alice'@'%';" >>"$d/log" 2>&1
}

# --- a DNSSEC bed for --dane ---------------------------------------------------------------
# knot serves three zones on 127.0.0.60:53: secure.example (signed by knot), bogus.example
# (signed, but the resolver is given a wrong trust anchor: validation fails) and
# insecure.example (unsigned). unbound on 127.0.0.59:53 validates with those anchors and no
# root anchor. The MX hosts' addresses 127.0.0.61 and 127.0.0.62 forward port 25 (socat) to the
# interop Postfix. Records name Postfix's key (3 1 1), a wrong key, or nothing.
start_dnssec_bed() {
    local d=$W/dns
    mkdir -p "$d/zones" "$d/db"
    if ! command -v knotd >/dev/null || ! command -v unbound >/dev/null || ! command -v socat >/dev/null; then
        log "knot, unbound or socat missing: DNSSEC rows fail"
        RESULTS+=("DNSSEC bed|server start|FAIL")
        FAILED=$((FAILED + 1))
        return 1
    fi
    local key wrong
    key=$(openssl x509 -in "$W/server.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
        openssl dgst -sha256 -hex | sed 's/.*= //')
    wrong=$(printf 'not the key' | openssl dgst -sha256 -hex | sed 's/.*= //')
    for zone in secure bogus insecure; do
        cat > "$d/zones/$zone.example.zone" <<EOF
\$ORIGIN $zone.example.
\$TTL 300
@ SOA ns.$zone.example. hostmaster.$zone.example. 1 3600 600 86400 300
@ NS ns
ns A 127.0.0.60
mx A 127.0.0.61
_25._tcp.mx TLSA 3 1 1 $key
wrong A 127.0.0.62
_25._tcp.wrong TLSA 3 1 1 $wrong
nodane A 127.0.0.61
@ MX 10 mx
@ MX 20 wrong
_mta-sts TXT "v=STSv1; id=20261205;"
mta-sts A 127.0.0.63
_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tls-reports@$zone.example"
EOF
    done
    # In the unsigned zone even a wrong record must be ignored.
    sed -i "s/^_25._tcp.mx TLSA .*/_25._tcp.mx TLSA 3 1 1 $wrong/" "$d/zones/insecure.example.zone"
    cat > "$d/knot.conf" <<EOF
server:
    listen: 127.0.0.60@53
    rundir: $d
    user: root:root
log:
  - target: stderr
    any: info
database:
    storage: $d/db
policy:
  - id: ecdsa
    algorithm: ecdsap256sha256
    nsec3: off
template:
  - id: default
    storage: $d/zones
    file: "%s.zone"
zone:
  - domain: secure.example
    dnssec-signing: on
    dnssec-policy: ecdsa
  - domain: bogus.example
    dnssec-signing: on
    dnssec-policy: ecdsa
  - domain: insecure.example
EOF
    start knot "$d/knot.log" knotd -c "$d/knot.conf"
    local ds_secure="" ds_bogus=""
    for _ in $(seq 1 100); do
        ds_secure=$(keymgr -c "$d/knot.conf" secure.example ds 2>/dev/null | grep ' DS ' | head -1)
        ds_bogus=$(keymgr -c "$d/knot.conf" bogus.example ds 2>/dev/null | grep ' DS ' | head -1)
        [ -n "$ds_secure" ] && [ -n "$ds_bogus" ] && break
        sleep 0.1
    done
    if [ -z "$ds_secure" ] || [ -z "$ds_bogus" ]; then
        log "knot did not sign the zones; its log:"
        tail -n 20 "$d/knot.log" | sed 's/^/    /'
        RESULTS+=("DNSSEC bed (knot)|server start|FAIL")
        FAILED=$((FAILED + 1))
        return 1
    fi
    # The bogus zone's anchor: its real DS with the digest's last hex digit changed.
    local last=${ds_bogus: -1}
    [ "$last" = 0 ] && last=1 || last=0
    printf '%s\n%s\n' "$ds_secure" "${ds_bogus%?}$last" > "$d/anchors"
    cat > "$d/unbound.conf" <<EOF
server:
    interface: 127.0.0.59
    port: 53
    do-ip6: no
    username: ""
    chroot: ""
    directory: "$d"
    pidfile: "$d/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    module-config: "validator iterator"
    trust-anchor-file: "$d/anchors"
    qname-minimisation: no
    target-fetch-policy: "0 0 0 0 0"
stub-zone:
    name: "secure.example"
    stub-addr: 127.0.0.60@53
stub-zone:
    name: "bogus.example"
    stub-addr: 127.0.0.60@53
stub-zone:
    name: "insecure.example"
    stub-addr: 127.0.0.60@53
EOF
    start unbound "$d/unbound.log" unbound -d -c "$d/unbound.conf"
    for ip in 127.0.0.61 127.0.0.62; do
        start "socat_${ip//./_}" "$d/socat-$ip.log" \
            socat "TCP-LISTEN:25,bind=$ip,fork,reuseaddr" TCP:127.0.0.1:10025
    done
    # The MTA-STS policy host of both domains (by the Host header), HTTPS on 127.0.0.63:443
    # with the interop certificate: enforce, listing only the domain's first MX.
    cat > "$d/mta-sts.py" <<'PY'
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = (self.headers.get("Host") or "").split(":")[0]
        domain = host[len("mta-sts."):] if host.startswith("mta-sts.") else ""
        if self.path != "/.well-known/mta-sts.txt" or not domain:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        body = ("version: STSv1\r\nmode: enforce\r\nmx: mx.%s\r\nmax_age: 86400\r\n" % domain).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.ThreadingHTTPServer(("127.0.0.63", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
    start mta_sts "$d/mta-sts.log" python3 "$d/mta-sts.py" "$W/server.pem" "$W/server.key"
    for _ in $(seq 1 100); do
        if ss -ltn 'src 127.0.0.59:53' 2>/dev/null | grep -q LISTEN &&
            ss -ltn 'src 127.0.0.62:25' 2>/dev/null | grep -q LISTEN &&
            ss -ltn 'src 127.0.0.63:443' 2>/dev/null | grep -q LISTEN; then
            return 0
        fi
        sleep 0.1
    done
    log "unbound or socat did not start; unbound's log:"
    tail -n 20 "$d/unbound.log" | sed 's/^/    /'
    RESULTS+=("DNSSEC bed (unbound)|server start|FAIL")
    FAILED=$((FAILED + 1))
    return 1
}

# check --dane through the bed's validating resolver, against Postfix behind the MX addresses.
dane_dns_rows() {
    log "DANE from DNSSEC (starttls check --dane --resolver)"
    local dane=("$BIN" check --json --dane --resolver 127.0.0.59)
    local key
    key=$(openssl x509 -in "$W/server.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
        openssl dgst -sha256 -hex | sed 's/.*= //')
    danerow() {
        local endpoint=$1 want=$2 pattern=$3
        shift 3
        row "$endpoint" "check --dane" sh -c \
            'want=$1; pattern=$2; shift 2; out=$("$@"); rc=$?; echo "$out"
             [ $rc -eq "$want" ] && echo "$out" | grep -q -- "$pattern"' \
            sh "$want" "$pattern" "${dane[@]}" "$@"
    }
    # Postfix's certificate is for localhost from a CA these checks do not trust: only the
    # validated TLSA record can authenticate it.
    danerow "mx.secure.example: a validated, matching TLSA (expect verified by DANE)" 0 \
        '"matched":"3 1 1 '"$key"'"' smtp://mx.secure.example
    danerow "wrong.secure.example: a validated TLSA for another key (expect exit 5)" 5 \
        'no TLSA record authenticated' smtp://wrong.secure.example
    danerow "mx.insecure.example: an unsigned zone's TLSA is ignored (PKIX decides: verified)" 0 \
        '"applies":false' --ca-file "$W/ca.pem" --servername localhost smtp://mx.insecure.example
    danerow "mx.bogus.example: validation fails (expect exit 5, kind dane, nothing sent)" 5 \
        '"kind":"dane"' smtp://mx.bogus.example
    danerow "nodane.secure.example: validated denial of TLSA (PKIX decides: verified)" 0 \
        '"tlsa_secure":true' --ca-file "$W/ca.pem" --servername localhost smtp://nodane.secure.example
}

start_postgres() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] || { log "postgresql not installed"; return 1; }
    local d=$W/postgres
    mkdir -p "$d"
    cp "$W/server.pem" "$d/cert.pem"
    cp "$W/server.key" "$d/key.pem"
    chown -R postgres "$d"
    chmod 600 "$d/key.pem"
    su postgres -s /bin/sh -c "$bin/initdb -D $d/data -A trust" >"$d/initdb.log" 2>&1
    cat >> "$d/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = 15432
ssl = on
ssl_cert_file = '$d/cert.pem'
ssl_key_file = '$d/key.pem'
unix_socket_directories = '$d'
EOF
    # Over TCP every login is checked: SCRAM-SHA-256 (offered with -PLUS over TLS) by default,
    # md5 and the cleartext password for one role each.
    cat > "$d/data/pg_hba.conf" <<EOF
local all all trust
hostssl all md5user 127.0.0.1/32 md5
hostssl all clearuser 127.0.0.1/32 password
hostssl all all 127.0.0.1/32 scram-sha-256
EOF
    start postgres "$d/log" runuser -u postgres -- "$bin/postgres" -D "$d/data"
    wait_port postgres 15432 "$d/log"
    runuser -u postgres -- "$bin/psql" -h "$d" -p 15432 -q -d postgres \
        -c "ALTER ROLE postgres PASSWORD 'secret'" -c "SET password_encryption = 'md5'" \
        -c "CREATE ROLE md5user LOGIN PASSWORD 'secret'" \
        -c "CREATE ROLE clearuser LOGIN PASSWORD 'secret'" >>"$d/log" 2>&1
}

# --- checks -------------------------------------------------------------------------------
# row ENDPOINT CLIENT COMMAND...: runs COMMAND, records pass/fail.
row() {
    local endpoint=$1 client=$2
    shift 2
    local out
    if out=$(timeout 60 "$@" 2>&1); then
        RESULTS+=("$endpoint|$client|pass")
    else
        RESULTS+=("$endpoint|$client|FAIL")
        FAILED=$((FAILED + 1))
        log "FAIL: $endpoint with $client"
        printf '%s\n' "$out" | tail -n 15 | sed 's/^/    /'
    fi
}

# The commands the rows run (arrays, so that `timeout` can run them).
set_clients() {
    CHECK=("$BIN" check --ca-file "$W/ca.pem")
    PY=(env PYTHONPATH="$ROOT/python" STARTTLS_LIBRARY="$LIB/libstarttls.so")
}

# pyrow ENDPOINT SCRIPT: a Python wrapper row; the script reads the CA path from argv[1].
pyrow() {
    local endpoint=$1 script=$2
    printf '%s\n' "$script" > "$W/row.py"
    row "$endpoint" "Python wrapper" "${PY[@]}" python3 "$W/row.py" "$W/ca.pem"
}

library_client_rows() {
    set_clients
    log "the library's client against real servers"
    row "Postfix smtp (STARTTLS offered)" "starttls check" "${CHECK[@]}" smtp://localhost:10025
    row "Postfix submission (STARTTLS required)" "starttls check" "${CHECK[@]}" submission://localhost:10587
    row "Postfix smtps" "starttls check" "${CHECK[@]}" smtps://localhost:10465
    row "Postfix smtp" "C smtp_client" "$W/c/smtp_client" 127.0.0.1 10025 "$W/ca.pem" localhost
    pyrow "Postfix submission: AUTH + message, found with IMAP" "
import base64, sys, time, starttls
cfg = starttls.Config(ca_file=sys.argv[1])
def say(c, line):
    c.write(line + b'\\r\\n')
    while True:
        reply = c.readline()
        if reply[3:4] != b'-': return reply
with starttls.connect('submission', '127.0.0.1', 10587, server_name='localhost', config=cfg) as c:
    assert any(x.startswith('AUTH') for x in c.fetch_capabilities()), 'no AUTH inside TLS'
    token = base64.b64encode(b'\\0alice@example.org\\0secret')
    assert say(c, b'AUTH PLAIN ' + token).startswith(b'235'), 'AUTH failed'
    assert say(c, b'MAIL FROM:<alice@example.org>').startswith(b'250')
    assert say(c, b'RCPT TO:<bob@example.org>').startswith(b'250')
    assert say(c, b'DATA').startswith(b'354')
    assert say(c, b'Subject: interop\\r\\n\\r\\nsent through starttls\\r\\n.').startswith(b'250')
    c.quit()
for attempt in range(50):
    with starttls.connect('imap', 'localhost', 10143, config=cfg) as c:
        c.write(b'a LOGIN bob@example.org secret\\r\\n')
        while not c.readline().startswith(b'a '): pass
        c.write(b'b SELECT INBOX\\r\\n')
        exists = 0
        while True:
            line = c.readline()
            if line.endswith(b'EXISTS\\r\\n'): exists = int(line.split()[1])
            if line.startswith(b'b '): break
        c.quit()
    if exists: break
    time.sleep(0.2)
assert exists >= 1, 'the message did not arrive'"
    row "Dovecot imap" "starttls check" "${CHECK[@]}" imap://localhost:10143
    row "Dovecot imaps" "starttls check" "${CHECK[@]}" imaps://localhost:10993
    row "Dovecot pop3" "starttls check" "${CHECK[@]}" pop3://localhost:10110
    row "Dovecot pop3s" "starttls check" "${CHECK[@]}" pop3s://localhost:10995
    row "Dovecot lmtp" "starttls check" "${CHECK[@]}" lmtp://localhost:10024
    row "Dovecot submission" "starttls check" "${CHECK[@]}" submission://localhost:10588
    row "Dovecot managesieve" "starttls check" "${CHECK[@]}" sieve://localhost:14190
    row "Dovecot imap" "C imap_client" "$W/c/imap_client" localhost 10143 "$W/ca.pem"
    row "Dovecot imaps" "C imap_client --implicit" "$W/c/imap_client" --implicit localhost 10993 "$W/ca.pem"
    # Login, SELECT, IDLE in a poll() loop over a non-blocking connection and stdin, `done`.
    row "Dovecot imap (IDLE, non-blocking poll loop)" "C imap_idle" sh -c \
        "(sleep 2; echo done) | IMAP_PASSWORD=secret '$W/c/imap_idle' 127.0.0.1 10143 alice '$W/ca.pem' localhost"
    row "Dovecot pop3" "C fd_upgrade" "$W/c/fd_upgrade" pop3 127.0.0.1 10110 localhost "$W/ca.pem"
    pyrow "Dovecot imap (LOGIN + SELECT inside TLS)" "
import sys, starttls
with starttls.connect('imap', 'localhost', 10143, config=starttls.Config(ca_file=sys.argv[1])) as c:
    c.write(b'a LOGIN user secret\r\n')
    while True:
        line = c.readline()
        if line.startswith(b'a '): break
    assert line.startswith(b'a OK'), line
    c.write(b'b SELECT INBOX\r\n')
    while True:
        line = c.readline()
        if line.startswith(b'b '): break
    assert line.startswith(b'b OK'), line
    c.quit()"
    row "slapd ldap (StartTLS)" "starttls check" "${CHECK[@]}" ldap://localhost:10389
    row "slapd ldaps" "starttls check" "${CHECK[@]}" ldaps://localhost:10636
    pyrow "slapd ldap (simple bind inside TLS)" "
import sys, starttls
def tlv(t, v): return bytes([t, len(v)]) + v
bind = tlv(0x30, tlv(0x02, b'\x02') + tlv(0x60, tlv(0x02, b'\x03') + tlv(0x04, b'cn=admin,dc=example,dc=org') + tlv(0x80, b'secret')))
with starttls.connect('ldap', 'localhost', 10389, config=starttls.Config(ca_file=sys.argv[1])) as c:
    c.sendall(bind)
    resp = c.read(64)
    assert resp[resp.index(b'\x0a\x01') + 2] == 0, resp.hex()"
    row "ProFTPD ftp (AUTH TLS)" "starttls check" "${CHECK[@]}" ftp://localhost:10021
    row "ProFTPD ftp (RETR, data resumes the session)" "Rust ftp_get" \
        "$ROOT/target/release/examples/ftp_get" localhost 10021 ftptest secret123 hello.txt --ca-file "$W/ca.pem"
    row "ProFTPD ftps (implicit)" "starttls check" "${CHECK[@]}" ftps://localhost:10990
    row "Prosody xmpp (STARTTLS + stream restart)" "starttls check" "${CHECK[@]}" xmpp://localhost:15222
    row "Prosody xmpps (direct TLS)" "starttls check" "${CHECK[@]}" xmpps://localhost:15223
    row "INN nntp" "starttls check" "${CHECK[@]}" nntp://localhost:10119
    row "INN nntps" "starttls check" "${CHECK[@]}" nntps://localhost:10563
    row "PostgreSQL (SSLRequest)" "starttls check" "${CHECK[@]}" postgres://localhost:15432
    row "MariaDB (SSL request)" "starttls check" "${CHECK[@]}" mysql://localhost:13306
    pyrow "MariaDB (Python: a login inside TLS)" "
import sys, starttls
with starttls.connect('mysql', 'localhost', 13306, config=starttls.Config(ca_file=sys.argv[1])) as c:
    assert c.authenticate('alice', 'secret', database='mail') == ('mysql_native_password', None)"
    pyrow "Postfix submission: starttls.stdlib.SMTP login + send_message" "
import sys, starttls, starttls.stdlib
from email.message import EmailMessage
msg = EmailMessage()
msg['From'], msg['To'], msg['Subject'] = 'alice@example.org', 'bob@example.org', 'stdlib'
msg.set_content('sent by smtplib through starttls.stdlib')
with starttls.stdlib.SMTP('localhost', 10587, config=starttls.Config(ca_file=sys.argv[1])) as s:
    assert s.login('alice@example.org', 'secret')[0] == 235
    assert s.send_message(msg) == {}"
    pyrow "Dovecot imap: starttls.stdlib.IMAP4 login + SELECT" "
import sys, starttls, starttls.stdlib
m = starttls.stdlib.IMAP4('localhost', 10143, config=starttls.Config(ca_file=sys.argv[1]))
assert m.login('alice', 'secret')[0] == 'OK'
typ, data = m.select('INBOX')
assert typ == 'OK', (typ, data)
m.logout()"
    pyrow "Dovecot pop3: starttls.stdlib.POP3 login + STAT" "
import sys, starttls, starttls.stdlib
p = starttls.stdlib.POP3('localhost', 10110, config=starttls.Config(ca_file=sys.argv[1]))
p.user('alice'); p.pass_('secret')
count, size = p.stat()
assert count >= 0 and size >= 0
p.quit()"
    pyrow "PostgreSQL (SCRAM login, then a query inside TLS)" "
import struct, sys, starttls
with starttls.connect('postgres', 'localhost', 15432, config=starttls.Config(ca_file=sys.argv[1])) as c:
    outcome = c.authenticate('postgres', 'secret', database='postgres')
    assert outcome == ('SCRAM-SHA-256-PLUS', 'tls-server-end-point'), outcome
    q = b'select 40 + 2\\0'
    c.sendall(b'Q' + struct.pack('!I', 4 + len(q)) + q)
    kinds, rows = b'', b''
    while not kinds.endswith(b'Z'):
        t = c.read(1); n = struct.unpack('!I', c.read(4))[0]; body = b''
        while len(body) < n - 4: body += c.read(n - 4 - len(body))
        kinds += t
        rows += body if t == b'D' else b''
    assert b'42' in rows, (kinds, rows)"
    log "monitoring and TLS versions (starttls check)"
    row "Postfix submission, --warn-days past the certificate's life (expect exit 11)" \
        "check --warn-days" sh -c '"$@" --warn-days 100000 submission://localhost:10587; [ $? -eq 11 ]' \
        sh "${CHECK[@]}"
    row "Dovecot imap --nagios (expect STARTTLS OK, exit 0)" "check --nagios" sh -c \
        'out=$("$@" --nagios imap://localhost:10143) || exit 1; echo "$out"
         case $out in "STARTTLS OK - "*"| time="*days_left=*) ;; *) exit 1;; esac' sh "${CHECK[@]}"
    row "Dovecot imap --nagios inside --warn-days (expect WARNING, exit 1)" "check --nagios" sh -c \
        'out=$("$@" --nagios --warn-days 100000 imap://localhost:10143); rc=$?; echo "$out"
         [ $rc -eq 1 ] && case $out in "STARTTLS WARNING - "*) ;; *) false;; esac' sh "${CHECK[@]}"
    # Another CA the server's certificate does not chain to: refused (exit 5), yet reported.
    [ -f "$W/other-ca.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 2 -subj "/CN=some other CA" -keyout "$W/other-ca.key" -out "$W/other-ca.pem" 2>/dev/null
    row "Postfix smtp, wrong CA (expect exit 5, the certificate still reported)" "check --json" sh -c \
        'out=$("$0" check --json --ca-file "$1" smtp://localhost:10025); rc=$?; echo "$out"
         [ $rc -eq 5 ] && echo "$out" | grep -q "\"subject\":\"CN=localhost\".*\"days_left\":"' \
        "$BIN" "$W/other-ca.pem"
    row "Dovecot imap, SSLKEYLOGFILE (expect the session's traffic secrets)" "check" sh -c \
        'rm -f "$0"; SSLKEYLOGFILE="$0" "$@" imap://localhost:10143 || exit 1
         grep -q "^CLIENT_TRAFFIC_SECRET_0 [0-9a-f]* [0-9a-f]*$" "$0"' "$W/keylog" "${CHECK[@]}"
    row "Postfix smtp --tls-max 1.2 (expect TLSv1.2)" "check --tls-max 1.2" sh -c \
        'out=$("$@" --json --tls-max 1.2 smtp://localhost:10025) || exit 1
         case $out in *"\"tls_version\":\"TLSv1.2\""*) ;; *) echo "$out"; exit 1;; esac' sh "${CHECK[@]}"
    dane_and_pin_rows
    dane_dns_rows
    log "authentication inside TLS (starttls check --user)"
    local auth=(env STARTTLS_PASSWORD=secret "${CHECK[@]}")
    # authrow ENDPOINT MECHANISM ARGS...: check --user logs in, with exactly that mechanism.
    authrow() {
        local endpoint=$1 mech=$2
        shift 2
        row "$endpoint" "check --user ($mech)" sh -c \
            'm=$1; shift; out=$("$@") || { echo "$out"; exit 1; }
             case $out in *"\"mechanism\":\"$m\""*) ;; *) echo "not $m: $out"; exit 1;; esac' \
            sh "$mech" "${auth[@]}" --json "$@"
    }
    authrow "Postfix submission (SASL via Dovecot)" SCRAM-SHA-256 --user alice@example.org submission://localhost:10587
    authrow "Dovecot imap" SCRAM-SHA-256 --user alice imap://localhost:10143
    authrow "Dovecot pop3" SCRAM-SHA-256 --user alice pop3://localhost:10110
    authrow "Dovecot managesieve" SCRAM-SHA-256 --user alice sieve://localhost:14190
    authrow "Dovecot submission" SCRAM-SHA-256 --user alice submission://localhost:10588
    row "slapd ldap (simple bind)" "check --user" "${auth[@]}" --user cn=admin,dc=example,dc=org ldap://localhost:10389
    authrow "Prosody xmpp (offers SCRAM-SHA-1 and PLAIN)" PLAIN --user alice xmpp://localhost:15222
    authrow "PostgreSQL (scram-sha-256)" SCRAM-SHA-256-PLUS --user postgres postgres://localhost:15432
    authrow "PostgreSQL (md5)" md5 --user md5user --database postgres postgres://localhost:15432
    authrow "PostgreSQL (password)" password --user clearuser --database postgres postgres://localhost:15432
    row "PostgreSQL, wrong password (expect exit 10)" "check --user" sh -c \
        'STARTTLS_PASSWORD=wrong "$0" check --ca-file "$1" --user postgres postgres://localhost:15432; [ $? -eq 10 ]' "$BIN" "$W/ca.pem"
    authrow "MariaDB (mysql_native_password, then the database)" mysql_native_password \
        --user alice --database mail mysql://localhost:13306
    row "MariaDB, wrong password (expect exit 10)" "check --user" sh -c \
        'STARTTLS_PASSWORD=wrong "$0" check --ca-file "$1" --user alice mysql://localhost:13306; [ $? -eq 10 ]' "$BIN" "$W/ca.pem"
    row "ProFTPD ftp (USER/PASS)" "check --user" env STARTTLS_PASSWORD=secret123 "${CHECK[@]}" --user ftptest ftp://localhost:10021
    row "Postfix submission: AUTH, then a test message (--mail-from/--rcpt-to)" "check --mail-from" sh -c \
        'out=$("$@") || { echo "$out"; exit 1; }
         case $out in *"\"mail\":{\"queued\":true"*) ;; *) echo "$out"; exit 1;; esac' \
        sh "${auth[@]}" --json --user alice@example.org --mail-from alice@example.org \
        --rcpt-to bob@example.org submission://localhost:10587
    printf 'good-token\n' > "$W/token"; printf 'bad-token\n' > "$W/bad-token"
    chmod 600 "$W/token" "$W/bad-token"
    authrow "Dovecot imap (OAuth 2.0 token, checked by tokeninfo)" OAUTHBEARER --user alice --oauth2-token-file "$W/token" imap://localhost:10143
    authrow "Dovecot pop3 (OAuth 2.0 token)" OAUTHBEARER --user alice --oauth2-token-file "$W/token" pop3://localhost:10110
    row "Dovecot imap, rejected token (expect exit 10, the JSON error, no token)" "check --user" sh -c \
        'out=$("$0" check --ca-file "$1" --user alice --oauth2-token-file "$2" imap://localhost:10143); rc=$?
         echo "$out"; [ $rc -eq 10 ] && case $out in *status=invalid_token*) ! echo "$out" | grep -q bad-token;; *) false;; esac' \
        "$BIN" "$W/ca.pem" "$W/bad-token"
    row "Dovecot imap, wrong password (SCRAM; expect exit 10)" "check --user" sh -c \
        'STARTTLS_PASSWORD=wrong "$0" check --ca-file "$1" --user alice imap://localhost:10143; [ $? -eq 10 ]' "$BIN" "$W/ca.pem"
    if [ -n "$IPV6" ]; then
        row "Dovecot imap over ::1" "starttls check" "${CHECK[@]}" "imap://[::1]:10143"
        row "Dovecot pop3s over ::1" "starttls check" "${CHECK[@]}" "pop3s://[::1]:10995"
    else
        log "no ::1 on loopback: IPv6 rows skipped"
    fi
}

# DANE and pins with records and pins computed from the servers' own certificates; the checks
# trust no CA of their own (the built-in roots do not know the interop CA), so the records decide.
dane_and_pin_rows() {
    log "DANE and pins (starttls check --tlsa, --pin-sha256)"
    local spki_sha256 ca_sha256 pin
    spki_sha256=$(openssl x509 -in "$W/server.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
        openssl dgst -sha256 -hex | sed 's/.*= //')
    ca_sha256=$(openssl x509 -in "$W/ca.pem" -outform DER | openssl dgst -sha256 -hex | sed 's/.*= //')
    pin=$(openssl x509 -in "$W/server.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
        openssl dgst -sha256 -binary | base64)
    # jsonrow ENDPOINT EXIT PATTERN ARGS...: check --json ARGS exits EXIT and prints PATTERN.
    jsonrow() {
        local endpoint=$1 want=$2 pattern=$3
        shift 3
        row "$endpoint" "check --json" sh -c \
            'want=$1; pattern=$2; shift 2; out=$("$@"); rc=$?; echo "$out"
             [ $rc -eq "$want" ] && echo "$out" | grep -q -- "$pattern"' \
            sh "$want" "$pattern" "$BIN" check --json "$@"
    }
    jsonrow "Postfix smtp, DANE-EE 3 1 1 of its key, another server name (expect verified)" 0 \
        '"matched":"3 1 1 '"$spki_sha256"'"' \
        --tlsa "3 1 1 $spki_sha256" --servername mx.wrong.example smtp://127.0.0.1:10025
    local wrong=${spki_sha256%??}00
    [ "$wrong" != "$spki_sha256" ] || wrong=${spki_sha256%??}ff
    jsonrow "Postfix smtp, a wrong DANE-EE record (expect exit 5, the record named)" 5 \
        'no TLSA record authenticated' --tlsa "3 1 1 $wrong" smtp://localhost:10025
    jsonrow "Postfix smtp, only a PKIX-EE record (unusable for SMTP: encrypted, unauthenticated)" 5 \
        '"no_usable_records":true' --tlsa "1 1 1 $spki_sha256" smtp://localhost:10025
    jsonrow "slapd ldap, DANE-TA 2 0 1 of the CA it sends (expect verified)" 0 \
        '"matched":"2 0 1 '"$ca_sha256"'"' --tlsa "2 0 1 $ca_sha256" ldap://localhost:10389
    jsonrow "slapd ldap, DANE-TA for a name the certificate lacks (expect exit 5)" 5 \
        'matched, but' --tlsa "2 0 1 $ca_sha256" --servername mx.wrong.example ldap://127.0.0.1:10389
    jsonrow "Dovecot imap, --pin-sha256 --pin-only (expect verified by the pin)" 0 \
        '"pin":true' --pin-sha256 "$pin" --pin-only imap://localhost:10143
    jsonrow "Dovecot imap, a wrong pin (expect exit 5, pin false, the key's pin shown)" 5 \
        '"pin":false' --ca-file "$W/ca.pem" --pin-sha256 "sha256//${pin%??????}AAAAA=" imap://localhost:10143
}

# What a person types to end a session in PROTO (empty: the client closes first).
goodbye() {
    case $1 in
        smtp|lmtp) printf 'EHLO me\\nQUIT\\n' ;;
        imap) printf 'a LOGOUT\\n' ;;
        pop3|nntp|ftp) printf 'QUIT\\n' ;;
        sieve) printf 'LOGOUT\\n' ;;
    esac
}

real_client_rows() {
    log "real clients against the library's server (starttls serve)"
    local port=17000
    for spec in "smtp|swaks" "smtp|curl" "smtp|openssl s_client" "smtp|gnutls-cli" "smtp|python smtplib" \
                "imap|curl" "imap|openssl s_client" "imap|python imaplib" \
                "pop3|curl" "pop3|gnutls-cli" "pop3|python poplib" \
                "ftp|openssl s_client" "ftp|python ftplib" "xmpp|openssl s_client" \
                "ldap|openssl s_client" "ldap|ldapsearch -ZZ" "nntp|python nntplib" "sieve|gnutls-cli" "postgres|openssl s_client" \
                "mysql|openssl s_client" "mysql|mariadb-admin"; do
        local proto=${spec%%|*} client=${spec#*|}
        port=$((port + 1))
        start "serve_$port" "$W/serve-$port.log" "$BIN" serve --protocol "$proto" \
            --listen "127.0.0.1:$port" --cert "$W/server.pem" --key "$W/server.key" --max-connections 1
        wait_port "starttls serve $proto" $port "$W/serve-$port.log" || continue
        local cmd
        case "$client" in
            swaks) cmd=(swaks --tls --tls-verify --tls-ca-path "$W/ca.pem" --server "localhost:$port"
                        --from a@example.org --to b@example.org --timeout 20) ;;
            curl)
                case $proto in
                    smtp) printf 'Subject: hi\r\n\r\nhello\r\n' > "$W/mail.txt"
                          cmd=(curl -sS --ssl-reqd --cacert "$W/ca.pem" "smtp://localhost:$port"
                               --mail-from a@example.org --mail-rcpt b@example.org -T "$W/mail.txt") ;;
                    *) cmd=(curl -sS --ssl-reqd --cacert "$W/ca.pem" -u user:pass "$proto://localhost:$port/") ;;
                esac ;;
            # The session ends with the protocol's goodbye and the server's close_notify; the
            # client must exit 0 and report no unclean close ("unexpected eof").
            "openssl s_client")
                local bye ign=""
                bye=$(goodbye "$proto")
                [ -n "$bye" ] && ign=-ign_eof
                cmd=(sh -c "printf '$bye' | openssl s_client -brief -verify_return_error -crlf $ign \
                        -starttls $proto -connect 127.0.0.1:$port -servername localhost \
                        -verify_hostname localhost -xmpphost localhost -CAfile $W/ca.pem \
                        > $W/client-$port.log 2>&1; rc=\$?; cat $W/client-$port.log; [ \$rc -eq 0 ] \
                        && grep -q 'Verification: OK' $W/client-$port.log \
                        && ! grep -qi 'unexpected eof' $W/client-$port.log") ;;
            # The MariaDB client: TLS with the CA checked, a login, COM_PING, COM_QUIT.
            mariadb-admin) cmd=(mariadb-admin --no-defaults --protocol=TCP -h 127.0.0.1 -P "$port"
                        --ssl --ssl-ca="$W/ca.pem" --ssl-verify-server-cert -u anyone -pany ping) ;;
            "ldapsearch -ZZ") cmd=(env LDAPTLS_CACERT="$W/ca.pem" ldapsearch -ZZ -x -LLL
                        -H "ldap://localhost:$port" -b "" -s base) ;;
            gnutls-cli)
                local bye
                bye=$(goodbye "$proto")
                cmd=(sh -c "(printf '$bye'; sleep 3) | gnutls-cli --starttls-proto=$proto \
                        --x509cafile=$W/ca.pem -p $port localhost > $W/client-$port.log 2>&1; \
                        rc=\$?; cat $W/client-$port.log; [ \$rc -eq 0 ] \
                        && grep -q 'Handshake was completed' $W/client-$port.log \
                        && ! grep -q 'non-properly terminated' $W/client-$port.log") ;;
            python*)
                local mod=${client#python }
                cmd=(python3 -W ignore -c "
import sys, ssl, $mod
ctx = ssl.create_default_context(cafile='$W/ca.pem')
p = $port
if '$mod' == 'smtplib':
    s = smtplib.SMTP('localhost', p); s.starttls(context=ctx); s.ehlo(); s.sendmail('a@x', ['b@x'], 'Subject: x\r\n\r\nhi'); s.quit()
elif '$mod' == 'imaplib':
    m = imaplib.IMAP4('localhost', p); m.starttls(ssl_context=ctx); m.logout()
elif '$mod' == 'poplib':
    m = poplib.POP3('localhost', p); m.stls(context=ctx); m.quit()
elif '$mod' == 'ftplib':
    f = ftplib.FTP_TLS(context=ctx); f.connect('localhost', p); f.auth(); f.prot_p(); f.login('u', 'p'); f.quit()
elif '$mod' == 'nntplib':
    n = nntplib.NNTP('localhost', p, usenetrc=False); n.starttls(context=ctx); n.quit()
") ;;
        esac
        row "starttls serve $proto" "$client" "${cmd[@]}"
    done
}

# tunnel NAME PORT ARGS...: a `starttls tunnel` on 127.0.0.1:PORT that ends after one connection
# (testssl's rows let it run: it makes dozens).
tunnel() {
    local name=$1 port=$2
    shift 2
    start "tunnel_$port" "$W/tunnel-$port.log" "$BIN" tunnel --listen "127.0.0.1:$port" "$@"
    wait_port "starttls tunnel $name" "$port" "$W/tunnel-$port.log"
}

# A row's tunnel log: every connection relayed, none refused.
tunnel_log_ok() {
    local logfile=$1
    sleep 0.5
    cat "$logfile"
    grep -q 'outcome=ok' "$logfile" && ! grep -q 'outcome=refused' "$logfile"
}

tunnel_rows() {
    log "starttls tunnel: TLS tools and plaintext clients through the library's dialogs"
    export -f tunnel_log_ok
    local port
    # Raw: a TLS scanner that cannot speak ManageSieve or NNTP STARTTLS tests the servers' TLS.
    if command -v testssl >/dev/null; then
        for spec in "sieve|14190|Dovecot managesieve" "nntp|10119|INN nntp"; do
            IFS='|' read -r proto sport name <<<"$spec"
            port=$((sport + 9000))
            tunnel "$proto raw" $port --protocol "$proto" --connect "localhost:$sport" || continue
            row "$name through tunnel (raw)" "testssl.sh -p" bash -c "testssl --quiet --color 0 \
                --warnings off --ip one -p 127.0.0.1:$port > $W/testssl-$port.log 2>&1; rc=\$?; \
                cat $W/testssl-$port.log; [ \$rc -eq 0 ] && grep -Eq 'TLS 1.[23] +offered' $W/testssl-$port.log \
                && tunnel_log_ok $W/tunnel-$port.log"
        done
    else
        RESULTS+=("tunnel (raw)|testssl.sh -p|FAIL (testssl.sh not installed)")
        FAILED=$((FAILED + 1))
    fi
    # Raw, with openssl s_client doing plain TLS: the protocol continues inside TLS.
    port=22190
    tunnel "sieve raw" $port --protocol sieve --connect localhost:14190 --max-connections 1
    row "Dovecot managesieve through tunnel (raw)" "openssl s_client" bash -c "printf 'LOGOUT\n' | \
        openssl s_client -brief -verify_return_error -crlf -ign_eof -connect 127.0.0.1:$port \
        -servername localhost -verify_hostname localhost -CAfile $W/ca.pem > $W/client-$port.log 2>&1; \
        rc=\$?; cat $W/client-$port.log; [ \$rc -eq 0 ] && grep -q 'Verification: OK' $W/client-$port.log \
        && grep -q '\"IMPLEMENTATION\"' $W/client-$port.log && ! grep -qi 'unexpected eof' $W/client-$port.log \
        && tunnel_log_ok $W/tunnel-$port.log"
    port=22119
    tunnel "nntp raw" $port --protocol nntp --connect localhost:10119 --max-connections 1
    row "INN nntp through tunnel (raw)" "openssl s_client" bash -c "printf 'CAPABILITIES\nQUIT\n' | \
        openssl s_client -brief -verify_return_error -crlf -ign_eof -connect 127.0.0.1:$port \
        -servername localhost -verify_hostname localhost -CAfile $W/ca.pem > $W/client-$port.log 2>&1; \
        rc=\$?; cat $W/client-$port.log; [ \$rc -eq 0 ] && grep -q '^205' $W/client-$port.log \
        && grep -q 'Verification: OK' $W/client-$port.log && tunnel_log_ok $W/tunnel-$port.log"
    port=22222
    tunnel "xmpp raw" $port --protocol xmpp --connect localhost:15222 --max-connections 1
    row "Prosody xmpp through tunnel (raw)" "openssl s_client" bash -c "(printf '<?xml version=\"1.0\"?><stream:stream to=\"localhost\" xmlns=\"jabber:client\" xmlns:stream=\"http://etherx.jabber.org/streams\" version=\"1.0\">'; \
        sleep 1; printf '</stream:stream>') | openssl s_client -brief -verify_return_error -ign_eof \
        -connect 127.0.0.1:$port -servername localhost -verify_hostname localhost -CAfile $W/ca.pem \
        > $W/client-$port.log 2>&1; rc=\$?; cat $W/client-$port.log; [ \$rc -eq 0 ] \
        && grep -q 'Verification: OK' $W/client-$port.log && grep -q 'stream:features' $W/client-$port.log \
        && tunnel_log_ok $W/tunnel-$port.log"
    # --terminate: plaintext clients, STARTTLS to the real servers done by the tunnel.
    port=22587
    tunnel "submission terminate" $port --terminate --protocol submission --connect localhost:10587 \
        --ca-file "$W/ca.pem" --max-connections 1
    row "Postfix submission through tunnel --terminate" "python smtplib (plaintext)" bash -c "python3 -c \"
import smtplib
s = smtplib.SMTP('127.0.0.1', $port, timeout=20)
s.ehlo()
assert 'starttls' not in s.esmtp_features, s.esmtp_features
s.login('alice@example.org', 'secret')
assert s.sendmail('alice@example.org', ['bob@example.org'], 'Subject: tunnel\r\n\r\nplaintext in, TLS out\r\n') == {}
s.quit()
\" && tunnel_log_ok $W/tunnel-$port.log"
    port=22143
    tunnel "imap terminate" $port --terminate --protocol imap --connect localhost:10143 \
        --ca-file "$W/ca.pem" --max-connections 1
    row "Dovecot imap through tunnel --terminate" "python imaplib (plaintext)" bash -c "python3 -c \"
import imaplib
m = imaplib.IMAP4('127.0.0.1', $port, timeout=20)
assert 'STARTTLS' not in m.capabilities, m.capabilities
m.login('alice', 'secret')
assert m.select('INBOX')[0] == 'OK'
m.logout()
\" && tunnel_log_ok $W/tunnel-$port.log"
    # --front: the library's STARTTLS in front of a server spoken to in plaintext.
    port=22025
    tunnel "smtp front" $port --front --protocol smtp --connect 127.0.0.1:10025 \
        --cert "$W/server.pem" --key "$W/server.key" --max-connections 1
    row "Postfix smtp (plaintext) behind tunnel --front" "starttls check" bash -c "$BIN check \
        --ca-file $W/ca.pem --servername localhost --mail-from alice@example.org --rcpt-to bob@example.org \
        smtp://127.0.0.1:$port && tunnel_log_ok $W/tunnel-$port.log"
}

# audit ENDPOINT URL [KNOWN...]: `check --audit --json` passes (exit 0), or finds exactly the
# KNOWN findings (ids above info, explained where the row is called) and exits 6.
auditrow() {
    local endpoint=$1 url=$2
    shift 2
    local known="$*"
    row "$endpoint" "starttls check --audit" bash -c "out=\$('$BIN' check --audit --json --ca-file '$W/ca.pem' \
        --servername localhost '$url'); rc=\$?; printf '%s\n' \"\$out\" | python3 -c '
import json, sys
r = json.load(sys.stdin)
a = r[\"audit\"]
for f in a[\"findings\"]: print(f[\"severity\"], f[\"id\"], \"-\", f[\"evidence\"])
for p in a[\"probes\"]:
    if p[\"outcome\"] in (\"error\", \"skipped\"): print(\"probe\", p[\"id\"], p[\"outcome\"], p[\"detail\"])
found = sorted(f[\"id\"] for f in a[\"findings\"] if f[\"severity\"] != \"info\")
errors = [p[\"id\"] for p in a[\"probes\"] if p[\"outcome\"] == \"error\"]
known = sorted(\"$known\".split())
assert found == known, (found, known)
assert not errors, errors
sys.exit(0)
' && if [ -z '$known' ]; then [ \$rc -eq 0 ]; else [ \$rc -eq 6 ]; fi"
}

audit_rows() {
    log "check --audit against the real servers"
    # Postfix 3.7's default smtpd_tls_protocols (!SSLv2, !SSLv3) still takes TLS 1.0 and 1.1,
    # which openssl s_client confirms below.
    auditrow "Postfix smtp" smtp://localhost:10025 tls1.0-accepted tls1.1-accepted
    auditrow "Postfix submission" submission://localhost:10587 tls1.0-accepted tls1.1-accepted
    row "Postfix smtp: TLS 1.0 accepted, as the audit says" "openssl s_client -tls1" bash -c \
        "openssl s_client -brief -tls1 -cipher DEFAULT@SECLEVEL=0 -starttls smtp \
         -connect 127.0.0.1:10025 </dev/null 2>&1 | tee /dev/stderr | grep -q 'Protocol version: TLSv1\$'"
    # Dovecot counts connections from 127.0.0.1 as secured: disable_plaintext_auth does not
    # apply to them, so a login starts in plaintext on loopback (not from another host).
    auditrow "Dovecot imap" imap://localhost:10143 login-advertised-before-tls plaintext-login-accepted
    auditrow "Dovecot pop3" pop3://localhost:10110 login-advertised-before-tls plaintext-login-accepted
    auditrow "Dovecot lmtp" lmtp://localhost:10024
    auditrow "Dovecot managesieve" sieve://localhost:14190 login-advertised-before-tls plaintext-login-accepted
    # nnrpd offers SASL (SCRAM only) before TLS and starts it there (low: SCRAM sends no
    # password); AUTHINFO USER only once TLS is up.
    auditrow "INN nntp" nntp://localhost:10119 login-advertised-before-tls plaintext-login-accepted
    auditrow "ProFTPD ftp" ftp://localhost:10021
    auditrow "Prosody xmpp" xmpp://localhost:15222
    # slapd (GnuTLS, Debian's default priority string) still takes TLS 1.0 and 1.1.
    auditrow "slapd ldap" ldap://localhost:10389 tls1.0-accepted tls1.1-accepted
    row "slapd: TLS 1.1 accepted, as the audit says" "openssl s_client -tls1_1" bash -c \
        "openssl s_client -brief -tls1_1 -cipher DEFAULT@SECLEVEL=0 -starttls ldap \
         -connect 127.0.0.1:10389 </dev/null 2>&1 | tee /dev/stderr | grep -q 'Protocol version: TLSv1.1'"
    auditrow "PostgreSQL" postgres://localhost:15432
    auditrow "MariaDB" mysql://localhost:13306
}

# starttls mx against the DNSSEC bed: secure.example (signed) has MX 10 mx (a matching TLSA)
# and MX 20 wrong (a TLSA for another key), an MTA-STS policy and a TLS-RPT record;
# insecure.example (unsigned, same records) is authenticated by MTA-STS alone; bogus.example
# fails validation.
mx_rows() {
    log "starttls mx (MX, DANE, MTA-STS, TLS-RPT) against the DNSSEC bed"
    local mx=("$BIN" mx --resolver 127.0.0.59 --ca-file "$W/ca.pem")
    mxrow() {
        local endpoint=$1 want=$2 check=$3
        shift 3
        row "$endpoint" "starttls mx" bash -c 'want=$1; check=$2; shift 2; out=$("$@"); rc=$?
            printf "%s\n" "$out"; [ $rc -eq "$want" ] || { echo "exit $rc, wanted $want"; exit 1; }
            printf "%s\n" "$out" | python3 -c "import json,sys; r=json.load(sys.stdin); $check"' \
            bash "$want" "$check" "${mx[@]}" --json "$@"
    }
    mxrow "secure.example: MX 10 DANE-authenticated, MX 20 wrong TLSA refused" 0 "
h = r['hosts']
assert r['verdict'] == 'secure' and r['mx']['secure'], r['verdict']
assert [x['host'] for x in h] == ['mx.secure.example', 'wrong.secure.example'], h
assert h[0]['verdict'] == 'secure' and h[0]['dane']['applies'] and h[0]['addresses'][0]['dane_matched'], h[0]
assert h[1]['verdict'] == 'refuse' and h[1]['dane']['applies'] and not h[1]['addresses'][0]['dane_matched'], h[1]
assert r['mta_sts']['mode'] == 'enforce' and r['mta_sts']['mx'] == ['mx.secure.example'], r['mta_sts']
assert h[1]['mta_sts_listed'] is False
assert r['tls_rpt']['rua'] == ['mailto:tls-reports@secure.example'], r['tls_rpt']
" secure.example
    mxrow "insecure.example: unsigned, authenticated by MTA-STS enforce" 0 "
h = r['hosts']
assert r['verdict'] == 'secure' and not r['mx']['secure'], r
assert h[0]['host'] == 'mx.insecure.example' and h[0]['verdict'] == 'secure', h[0]
assert not h[0]['dane']['applies'] and h[0]['addresses'][0]['pkix_verified'], h[0]
assert h[1]['verdict'] == 'refuse' and 'not in the policy' in h[1]['reason'], h[1]
" insecure.example
    mxrow "bogus.example: the MX lookup fails validation (exit 8)" 8 "
assert r['ok'] is False and 'MX lookup failed' in r['error'], r
" bogus.example
    row "secure.example --nagios" "starttls mx" bash -c "out=\$('$BIN' mx --resolver 127.0.0.59 \
        --ca-file '$W/ca.pem' --nagios secure.example); rc=\$?; echo \"\$out\"; [ \$rc -eq 0 ] \
        && echo \"\$out\" | grep -q '^STARTTLS OK - secure.example: secure'"
}

print_matrix() {
    echo
    printf '%-52s %-26s %s\n' "endpoint" "client" "result"
    printf '%-52s %-26s %s\n' "--------" "------" "------"
    local r
    for r in "${RESULTS[@]}"; do
        IFS='|' read -r e c res <<<"$r"
        printf '%-52s %-26s %s\n' "$e" "$c" "$res"
    done
    local total=${#RESULTS[@]}
    echo
    echo "interop: $((total - FAILED)) passed, $FAILED failed ($(( $(date +%s) - START )) s)"
}

install_packages
build
make_certs
log "starting servers in $W"
start_dovecot
start_postfix
start_slapd
start_proftpd
start_prosody
start_inn
start_postgres
start_mariadb
start_dnssec_bed
library_client_rows
real_client_rows
tunnel_rows
audit_rows
mx_rows
print_matrix
FINISHED=1
[ "$FAILED" -eq 0 ]
