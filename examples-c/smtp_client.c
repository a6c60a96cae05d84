/*
 * smtp_client: connect to an SMTP server, upgrade with STARTTLS, say EHLO again inside TLS,
 * print what was negotiated, and QUIT politely.
 *
 *   smtp_client [-v] HOST PORT [CA_FILE [SERVER_NAME]]
 *
 * -v prints the dialog as it happens (through the library's log callback), marking the lines
 * that travelled inside TLS.
 * CA_FILE: trust only these CAs (default: the built-in webpki roots). SERVER_NAME: the name to
 * verify when it differs from HOST. Exit status 0 on success, 1 on any failure (the message
 * names the result code and quotes the server's reply when there is one).
 *
 * Build: cc smtp_client.c -o smtp_client $(pkg-config --cflags --libs starttls)
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

/* Reads one reply line (up to CRLF) into buf. Returns 0 on success. */
static uint32_t read_line(starttls_conn *conn, char *buf, size_t len) {
    size_t used = 0;
    while (used + 1 < len) {
        uint8_t c;
        size_t n = 0;
        uint32_t rc = starttls_read(conn, &c, 1, &n);
        if (rc != STARTTLS_OK) {
            return rc;
        }
        if (n == 0) {
            break; /* clean close */
        }
        if (c == '\n') {
            break;
        }
        if (c != '\r') {
            buf[used++] = (char)c;
        }
    }
    buf[used] = '\0';
    return STARTTLS_OK;
}

static void log_line(void *userdata, uint32_t direction, bool encrypted, const char *line) {
    FILE *out = (FILE *)userdata;
    fprintf(out, "%s%s %s\n", direction == STARTTLS_DIRECTION_SENT ? "C:" : "S:",
            encrypted ? " [TLS]" : "", line);
}

int main(int argc, char **argv) {
    int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    argv += verbose;
    argc -= verbose;
    if (argc < 3) {
        fprintf(stderr, "usage: smtp_client [-v] HOST PORT [CA_FILE [SERVER_NAME]]\n");
        return 2;
    }
    const char *host = argv[1];
    long port = strtol(argv[2], NULL, 10);
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "bad port %s\n", argv[2]);
        return 2;
    }

    starttls_config_builder *b = starttls_config_builder_new();
    uint32_t rc;
    if (argc > 3 && (rc = starttls_config_builder_set_ca_file(b, argv[3])) != STARTTLS_OK) {
        starttls_config_builder_free(b);
        return fail("CA file", rc, NULL);
    }
    if (verbose && (rc = starttls_config_builder_set_log_callback(b, log_line, stdout)) != STARTTLS_OK) {
        starttls_config_builder_free(b);
        return fail("log", rc, NULL);
    }
    if ((rc = starttls_config_builder_set_timeout_ms(b, 10000)) != STARTTLS_OK) {
        starttls_config_builder_free(b);
        return fail("timeout", rc, NULL);
    }
    const starttls_config *config = NULL;
    if ((rc = starttls_config_builder_build(b, &config)) != STARTTLS_OK) {
        return fail("config", rc, NULL); /* the builder is consumed either way */
    }

    starttls_conn *conn = NULL;
    rc = starttls_connect(config, STARTTLS_PROTO_SMTP, host, (uint16_t)port,
                          argc > 4 ? argv[4] : NULL, &conn);
    starttls_config_free(config); /* the connection keeps what it needs */
    if (rc != STARTTLS_OK) {
        return fail("connect", rc, NULL);
    }

    char text[4096];
    int status = 0;
    starttls_conn_cipher_suite(conn, text, sizeof text);
    printf("tls: 0x%04x %s\n", starttls_conn_tls_version(conn), text);
    printf("verified: %s\n",
           starttls_conn_verification(conn) == STARTTLS_VERIFY_VERIFIED ? "yes" : "no");

    /* RFC 3207: forget what was said before TLS and ask again. */
    if ((rc = starttls_conn_fetch_capabilities(conn)) != STARTTLS_OK) {
        status = fail("EHLO", rc, conn);
        goto out;
    }
    starttls_conn_capabilities(conn, text, sizeof text);
    printf("capabilities after TLS:\n%s\n", text);

    static const char quit[] = "QUIT\r\n";
    size_t written = 0;
    if ((rc = starttls_write(conn, (const uint8_t *)quit, strlen(quit), &written)) != STARTTLS_OK) {
        status = fail("QUIT", rc, conn);
        goto out;
    }
    if ((rc = read_line(conn, text, sizeof text)) != STARTTLS_OK) {
        status = fail("QUIT reply", rc, conn);
        goto out;
    }
    printf("QUIT: %s\n", text);
    if ((rc = starttls_close(conn)) != STARTTLS_OK) {
        status = fail("close", rc, conn);
    }
out:
    starttls_conn_free(conn);
    return status;
}
