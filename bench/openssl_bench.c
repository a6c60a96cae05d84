/*
 * The OpenSSL reference for bench/run.sh: the same SMTP STARTTLS dialog, bulk transfer and
 * idle-connection memory as benches/starttls.rs, with libssl on both ends.
 *
 *   openssl_bench smtp-server PORT CERT KEY         (an SMTP sink: EHLO, MAIL, RCPT, DATA, QUIT)
 *   openssl_bench smtp-client PORT CA N full|resumed
 *   openssl_bench smtp-data PORT CA MIB             (one message of MIB MiB through DATA)
 *   openssl_bench bulk-server PORT CERT KEY
 *   openssl_bench bulk-client PORT CA MIB WRITE_KIB
 *   openssl_bench memory PORT CA N plain|release
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "openssl_bench: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 128) != 0) die("listen");
    return fd;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Reads one line from a plain fd without taking anything past it (as careful clients must
 * before TLS): peek, then consume up to the newline; two syscalls a line, as the library. */
static int fd_line(int fd, char *buf, size_t len) {
    size_t n = 0;
    while (n + 1 < len) {
        ssize_t got = recv(fd, buf + n, len - 1 - n, MSG_PEEK);
        if (got <= 0) break;
        char *nl = memchr(buf + n, '\n', (size_t)got);
        size_t take = nl ? (size_t)(nl - (buf + n)) + 1 : (size_t)got;
        if (recv(fd, buf + n, take, 0) != (ssize_t)take) die("recv");
        n += take;
        if (nl) break;
    }
    buf[n] = '\0';
    return (int)n;
}

/* Reads an SMTP reply (until a line whose 4th character is a space). */
static void fd_reply(int fd) {
    char line[512];
    do {
        if (fd_line(fd, line, sizeof line) <= 0) die("reply");
    } while (strlen(line) > 3 && line[3] == '-');
}

static int ssl_line(SSL *ssl, char *buf, size_t len) {
    size_t n = 0;
    char c;
    while (n + 1 < len && SSL_read(ssl, &c, 1) == 1) {
        buf[n++] = c;
        if (c == '\n') break;
    }
    buf[n] = '\0';
    return (int)n;
}

static void ssl_reply(SSL *ssl) {
    char line[512];
    do {
        if (ssl_line(ssl, line, sizeof line) <= 0) die("tls reply");
    } while (strlen(line) > 3 && line[3] == '-');
}

/* A buffered line reader over SSL_read, as a real sink reads (a record at a time). */
struct ssl_reader {
    SSL *ssl;
    char buf[16384];
    size_t pos, len;
};

/* One line into `line` (truncated to `cap`, always NUL-terminated); its full length, 0 at EOF. */
static size_t reader_line(struct ssl_reader *r, char *line, size_t cap) {
    size_t n = 0;
    for (;;) {
        if (r->pos == r->len) {
            int got = SSL_read(r->ssl, r->buf, sizeof r->buf);
            if (got <= 0) break;
            r->pos = 0;
            r->len = (size_t)got;
        }
        char *start = r->buf + r->pos;
        char *nl = memchr(start, '\n', r->len - r->pos);
        size_t take = nl ? (size_t)(nl - start) + 1 : r->len - r->pos;
        if (n + 1 < cap) {
            size_t keep = take < cap - 1 - n ? take : cap - 1 - n;
            memcpy(line + n, start, keep);
        }
        n += take;
        r->pos += take;
        if (nl) break;
    }
    line[n < cap ? n : cap - 1] = '\0';
    return n;
}

static SSL_CTX *server_ctx(const char *cert, const char *key) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) die("certificate");
    return ctx;
}

static SSL_CTX *client_ctx(const char *ca) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) die("CA");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

static void smtp_server(int port, const char *cert, const char *key) {
    SSL_CTX *ctx = server_ctx(cert, key);
    int lfd = listen_on(port);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        int one = 1;
        char line[512];
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        const char *greet = "220 bench ESMTP\r\n";
        write(fd, greet, strlen(greet));
        fd_line(fd, line, sizeof line); /* EHLO */
        const char *caps = "250-bench\r\n250 STARTTLS\r\n";
        write(fd, caps, strlen(caps));
        fd_line(fd, line, sizeof line); /* STARTTLS */
        const char *go = "220 go\r\n";
        write(fd, go, strlen(go));
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            struct ssl_reader r = {ssl, {0}, 0, 0};
            while (reader_line(&r, line, sizeof line) > 0) {
                if (strncmp(line, "EHLO", 4) == 0) {
                    SSL_write(ssl, "250-bench\r\n250 8BITMIME\r\n", 25);
                } else if (strncmp(line, "MAIL", 4) == 0 || strncmp(line, "RCPT", 4) == 0) {
                    SSL_write(ssl, "250 ok\r\n", 8);
                } else if (strncmp(line, "DATA", 4) == 0) {
                    SSL_write(ssl, "354 go\r\n", 8);
                    size_t n;
                    while ((n = reader_line(&r, line, sizeof line)) > 0 &&
                           !(n <= 3 && (!strcmp(line, ".\r\n") || !strcmp(line, ".\n")))) {
                    }
                    SSL_write(ssl, "250 queued\r\n", 12);
                } else if (strncmp(line, "QUIT", 4) == 0) {
                    SSL_write(ssl, "221 bye\r\n", 9);
                    SSL_shutdown(ssl);
                    break;
                }
            }
        }
        SSL_free(ssl);
        close(fd);
    }
}

static void smtp_client(int port, const char *ca, int n, int resume) {
    SSL_CTX *ctx = client_ctx(ca);
    SSL_SESSION *session = NULL;
    int resumed = 0;
    double start = 0;
    for (int i = 0; i <= n; i++) {
        if (i == 1) start = now(); /* the first one warms up */
        int fd = connect_to(port);
        char line[512];
        fd_reply(fd);
        write(fd, "EHLO client\r\n", 13);
        fd_reply(fd);
        write(fd, "STARTTLS\r\n", 10);
        fd_line(fd, line, sizeof line);
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, "localhost");
        SSL_set1_host(ssl, "localhost");
        if (resume && session) SSL_set_session(ssl, session);
        if (SSL_connect(ssl) != 1) die("handshake");
        SSL_write(ssl, "EHLO client\r\n", 13);
        ssl_reply(ssl);
        if (i > 0 && SSL_session_reused(ssl)) resumed++;
        SSL_write(ssl, "QUIT\r\n", 6);
        ssl_reply(ssl);
        if (resume) {
            SSL_SESSION *s = SSL_get1_session(ssl);
            if (s) {
                if (session) SSL_SESSION_free(session);
                session = s;
            }
        }
        SSL_shutdown(ssl);
        SSL_free(ssl);
        close(fd);
    }
    double secs = now() - start;
    printf("upgrades mode=%s threads=1 n=%d resumed=%d secs=%.3f rate=%.1f\n",
           resume ? "resumed" : "full", n, resumed, secs, n / secs);
}

/* One SMTP session that sends a message of `mib` MiB (lines of 998 bytes) through DATA; the time
 * from DATA to the server's 250, as MiB/s. */
static void smtp_data(int port, const char *ca, int mib) {
    SSL_CTX *ctx = client_ctx(ca);
    int fd = connect_to(port);
    char line[512];
    fd_reply(fd);
    write(fd, "EHLO client\r\n", 13);
    fd_reply(fd);
    write(fd, "STARTTLS\r\n", 10);
    fd_line(fd, line, sizeof line);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1) die("handshake");
    const char *cmds[] = {"EHLO client\r\n", "MAIL FROM:<a@bench>\r\n", "RCPT TO:<b@bench>\r\n",
                          "DATA\r\n"};
    for (int i = 0; i < 4; i++) {
        SSL_write(ssl, cmds[i], (int)strlen(cmds[i]));
        ssl_reply(ssl);
    }
    /* 64 KiB of 1000-byte lines (998 + CRLF), no line starting with a dot. */
    static char chunk[64 * 1000];
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = (i % 1000 == 998) ? '\r' : (i % 1000 == 999) ? '\n' : 'x';
    long long total = (long long)mib * 1024 * 1024, sent = 0;
    double start = now();
    while (sent < total) {
        if (SSL_write(ssl, chunk, sizeof chunk) != (int)sizeof chunk) die("write");
        sent += sizeof chunk;
    }
    SSL_write(ssl, ".\r\n", 3);
    ssl_reply(ssl);
    double secs = now() - start;
    SSL_write(ssl, "QUIT\r\n", 6);
    ssl_reply(ssl);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    printf("smtp-data mib=%.0f secs=%.3f mib_per_s=%.1f\n", sent / 1048576.0, secs,
           sent / 1048576.0 / secs);
}

static void bulk_server(int port, const char *cert, const char *key) {
    SSL_CTX *ctx = server_ctx(cert, key);
    int lfd = listen_on(port);
    printf("ready\n");
    fflush(stdout);
    int fd = accept(lfd, NULL, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1) die("accept");
    static char buf[256 * 1024];
    unsigned long long want = 0, got = 0;
    if (SSL_read(ssl, &want, sizeof want) != (int)sizeof want) die("size");
    while (got < want) {
        int r = SSL_read(ssl, buf, sizeof buf);
        if (r <= 0) break;
        got += (unsigned)r;
    }
    SSL_write(ssl, "!", 1);
    SSL_shutdown(ssl);
    close(fd);
}

static void bulk_client(int port, const char *ca, int mib, int kib) {
    SSL_CTX *ctx = client_ctx(ca);
    int fd = connect_to(port);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1) die("handshake");
    unsigned long long total = (unsigned long long)mib << 20, sent = 0;
    size_t chunk = (size_t)kib * 1024;
    char *data = malloc(chunk);
    memset(data, 0x5a, chunk);
    double start = now();
    SSL_write(ssl, &total, sizeof total);
    while (sent < total) {
        if (SSL_write(ssl, data, (int)chunk) <= 0) die("write");
        sent += chunk;
    }
    char ack;
    SSL_read(ssl, &ack, 1);
    double secs = now() - start;
    printf("bulk mode=openssl write_kib=%d mib=%d secs=%.3f mib_per_s=%.1f\n", kib, mib, secs, mib / secs);
    free(data);
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) kib = atol(line + 6);
    }
    if (f) fclose(f);
    return kib;
}

static SSL *memory_connection(SSL_CTX *ctx, int port, const char *payload, size_t len) {
    int fd = connect_to(port);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1) die("handshake");
    if (SSL_write(ssl, payload, (int)len) <= 0) die("write");
    return ssl;
}

static void memory(int port, const char *ca, int n, int release) {
    SSL_CTX *ctx = client_ctx(ca);
    if (release) SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    static char payload[64 * 1024];
    memset(payload, 0x42, sizeof payload);
    SSL **conns = calloc((size_t)n + 1, sizeof *conns);
    conns[n] = memory_connection(ctx, port, payload, sizeof payload); /* warm-up */
    long before = rss_kib();
    for (int i = 0; i < n; i++) conns[i] = memory_connection(ctx, port, payload, sizeof payload);
    struct timespec pause = {0, 200000000};
    nanosleep(&pause, NULL);
    long after = rss_kib();
    printf("memory mode=openssl-%s n=%d rss_delta_kib=%ld per_connection_kib=%.1f\n",
           release ? "release" : "plain", n, after - before, (double)(after - before) / n);
    for (int i = 0; i <= n; i++) SSL_free(conns[i]);
    free(conns);
}

int main(int argc, char **argv) {
    if (argc < 3) die("usage: see the top of openssl_bench.c");
    int port = atoi(argv[2]);
    if (!strcmp(argv[1], "smtp-server") && argc >= 5) smtp_server(port, argv[3], argv[4]);
    else if (!strcmp(argv[1], "smtp-client") && argc >= 6)
        smtp_client(port, argv[3], atoi(argv[4]), !strcmp(argv[5], "resumed"));
    else if (!strcmp(argv[1], "smtp-data") && argc >= 5) smtp_data(port, argv[3], atoi(argv[4]));
    else if (!strcmp(argv[1], "bulk-server") && argc >= 5) bulk_server(port, argv[3], argv[4]);
    else if (!strcmp(argv[1], "bulk-client") && argc >= 6)
        bulk_client(port, argv[3], atoi(argv[4]), atoi(argv[5]));
    else if (!strcmp(argv[1], "memory") && argc >= 6)
        memory(port, argv[3], atoi(argv[4]), !strcmp(argv[5], "release"));
    else die("unknown mode");
    return 0;
}
