/*
 * smtp_sink: a minimal SMTP server that requires STARTTLS, accepts messages and prints them.
 * The library plays everything before TLS (greeting, EHLO with STARTTLS, "530 must issue
 * STARTTLS first" to MAIL/AUTH, refusing pipelined commands after STARTTLS); this program only
 * handles the session inside TLS.
 *
 *   smtp_sink PORT CERT.pem KEY.pem [CONNECTIONS]
 *
 * Listens on 127.0.0.1:PORT (0 picks a free port), prints "listening on PORT", serves
 * CONNECTIONS connections one after the other (default 1), and writes each message to stdout.
 *
 * Build: cc smtp_sink.c -o smtp_sink $(pkg-config --cflags --libs starttls)
 */
#define _POSIX_C_SOURCE 200112L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <starttls.h>

/* Reads one line (CRLF stripped) into buf; -1 on error or end of stream. */
static long read_line(starttls_conn *conn, char *buf, size_t len) {
    size_t used = 0;
    for (;;) {
        uint8_t c;
        size_t n = 0;
        if (starttls_read(conn, &c, 1, &n) != STARTTLS_OK || n == 0) {
            return -1;
        }
        if (c == '\n') {
            break;
        }
        if (c != '\r' && used + 1 < len) {
            buf[used++] = (char)c;
        }
    }
    buf[used] = '\0';
    return (long)used;
}

static int say(starttls_conn *conn, const char *reply) {
    size_t n = 0;
    return starttls_write(conn, (const uint8_t *)reply, strlen(reply), &n) == STARTTLS_OK ? 0 : -1;
}

static int has_verb(const char *line, const char *verb) {
    size_t n = strlen(verb);
    return strncasecmp(line, verb, n) == 0 && (line[n] == '\0' || line[n] == ' ' || line[n] == ':');
}

/* The session inside TLS: the client speaks first (EHLO again, RFC 3207). */
static void session(starttls_conn *conn) {
    char line[1024];
    while (read_line(conn, line, sizeof line) >= 0) {
        if (has_verb(line, "EHLO")) {
            say(conn, "250-sink.localhost\r\n250-AUTH PLAIN\r\n250 SIZE 10485760\r\n");
        } else if (has_verb(line, "STARTTLS")) {
            say(conn, "503 5.5.1 TLS already active\r\n"); /* a second STARTTLS is refused */
        } else if (has_verb(line, "MAIL") || has_verb(line, "RCPT") || has_verb(line, "RSET") ||
                   has_verb(line, "NOOP")) {
            say(conn, "250 2.0.0 OK\r\n");
        } else if (has_verb(line, "DATA")) {
            say(conn, "354 End data with <CR><LF>.<CR><LF>\r\n");
            printf("--- message ---\n");
            while (read_line(conn, line, sizeof line) >= 0 && strcmp(line, ".") != 0) {
                printf("%s\n", line[0] == '.' ? line + 1 : line);
            }
            printf("--- end ---\n");
            fflush(stdout);
            say(conn, "250 2.0.0 Message accepted\r\n");
        } else if (has_verb(line, "QUIT")) {
            say(conn, "221 2.0.0 Bye\r\n");
            starttls_close(conn);
            return;
        } else {
            say(conn, "500 5.5.2 Command unrecognized\r\n");
        }
    }
    /* The client closed first: answer with our close_notify too, so the end is orderly. */
    starttls_close(conn);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT CERT.pem KEY.pem [CONNECTIONS]\n", argv[0]);
        return 2;
    }
    int connections = argc > 4 ? atoi(argv[4]) : 1;

    starttls_server_config_builder *b = starttls_server_config_builder_new();
    uint32_t rc = starttls_server_config_builder_set_certificate_files(b, argv[2], argv[3]);
    if (rc == STARTTLS_OK) {
        rc = starttls_server_config_builder_set_hostname(b, "sink.localhost");
    }
    if (rc == STARTTLS_OK) {
        rc = starttls_server_config_builder_set_timeout_ms(b, 10000);
    }
    const starttls_server_config *config = NULL;
    if (rc != STARTTLS_OK) {
        starttls_server_config_builder_free(b);
    } else {
        rc = starttls_server_config_builder_build(b, &config);
    }
    char msg[512];
    if (rc != STARTTLS_OK) {
        starttls_last_error(msg, sizeof msg);
        fprintf(stderr, "config: %s: %s\n", starttls_result_name(rc), msg);
        return 1;
    }

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 8) != 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &alen) != 0) {
        perror("listen");
        return 1;
    }
    printf("listening on %d\n", ntohs(addr.sin_port));
    fflush(stdout);

    for (int i = 0; i < connections; i++) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) {
            perror("accept");
            break;
        }
        starttls_conn *conn = NULL;
        rc = starttls_accept_fd(config, STARTTLS_PROTO_SMTP, fd, STARTTLS_FD_TAKE_OWNERSHIP, &conn);
        if (rc != STARTTLS_OK) {
            /* With TAKE_OWNERSHIP the library has closed the fd. */
            starttls_last_error(msg, sizeof msg);
            printf("refused connection: %s: %s\n", starttls_result_name(rc), msg);
            fflush(stdout);
            continue;
        }
        starttls_conn_peer_name(conn, msg, sizeof msg);
        printf("TLS 0x%04x with client \"%s\"\n", starttls_conn_tls_version(conn), msg);
        fflush(stdout);
        session(conn);
        starttls_conn_free(conn);
    }
    close(listener);
    starttls_server_config_free(config);
    return 0;
}
