/*
 * imap_client: connect to an IMAP server, upgrade with STARTTLS (or imaps with --implicit),
 * show the capabilities before TLS (untrusted) and after, and LOGOUT.
 *
 *   imap_client [--implicit] HOST PORT [CA_FILE]
 *
 * Build: cc imap_client.c -o imap_client $(pkg-config --cflags --libs starttls)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <starttls.h>

static int fail(const char *what, uint32_t rc, const starttls_conn *conn) {
    char msg[1024];
    if (conn != NULL) {
        starttls_conn_error(conn, msg, sizeof msg);
    } else {
        starttls_last_error(msg, sizeof msg);
    }
    fprintf(stderr, "%s: %s: %s\n", what, starttls_result_name(rc), msg);
    return 1;
}

/* Reads one line; returns its length, or -1 on error or end of stream. */
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

int main(int argc, char **argv) {
    int implicit = argc > 1 && strcmp(argv[1], "--implicit") == 0;
    char **args = argv + implicit;
    if (argc - implicit < 3) {
        fprintf(stderr, "usage: %s [--implicit] HOST PORT [CA_FILE]\n", argv[0]);
        return 2;
    }
    long port = strtol(args[2], NULL, 10);
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "bad port %s\n", args[2]);
        return 2;
    }

    starttls_config_builder *b = starttls_config_builder_new();
    uint32_t rc = STARTTLS_OK;
    if (argc - implicit > 3) {
        rc = starttls_config_builder_set_ca_file(b, args[3]);
    }
    if (rc == STARTTLS_OK) {
        rc = starttls_config_builder_set_fetch_capabilities(b, true);
    }
    if (rc != STARTTLS_OK) {
        starttls_config_builder_free(b);
        return fail("config", rc, NULL);
    }
    const starttls_config *config = NULL;
    if ((rc = starttls_config_builder_build(b, &config)) != STARTTLS_OK) {
        return fail("config", rc, NULL);
    }
    starttls_conn *conn = NULL;
    rc = starttls_connect(config, implicit ? STARTTLS_PROTO_IMAPS : STARTTLS_PROTO_IMAP, args[1],
                          (uint16_t)port, NULL, &conn);
    starttls_config_free(config);
    if (rc != STARTTLS_OK) {
        return fail("connect", rc, NULL);
    }

    char text[4096];
    starttls_conn_greeting(conn, text, sizeof text);
    printf("greeting: %s\n", text);
    starttls_conn_capabilities_before_tls(conn, text, sizeof text);
    printf("before TLS (untrusted): %s\n", text);
    starttls_conn_capabilities(conn, text, sizeof text);
    printf("after TLS: %s\n", text);

    int status = 0;
    static const char logout[] = "a1 LOGOUT\r\n";
    size_t written = 0;
    if ((rc = starttls_write(conn, (const uint8_t *)logout, strlen(logout), &written)) != STARTTLS_OK) {
        status = fail("LOGOUT", rc, conn);
    } else {
        while (read_line(conn, text, sizeof text) >= 0) {
            printf("S: %s\n", text);
            if (strncmp(text, "a1 ", 3) == 0) {
                break;
            }
        }
        starttls_close(conn);
    }
    starttls_conn_free(conn);
    return status;
}
