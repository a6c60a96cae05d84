/* A poll()-driven program over a non-blocking connection, as event-loop mail programs are
 * written: WANT_READ / WANT_WRITE, bytes pending inside the library after a 1-byte read, the
 * bounded line reader, the cipher strength, the per-connection timeout, the version number. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "starttls.h"

static int failures = 0, checks = 0;
#define CHECK(cond)                                                   \
    do {                                                              \
        checks++;                                                     \
        if (!(cond)) {                                                \
            failures++;                                               \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                             \
    } while (0)

/* Waits until the fd is ready for what the library asked for. */
static void wait_for(starttls_conn *conn, uint32_t want) {
    struct pollfd p = {starttls_conn_fd(conn), want == STARTTLS_WANT_WRITE ? POLLOUT : POLLIN, 0};
    poll(&p, 1, 5000);
}

static uint32_t send_all(starttls_conn *conn, const char *text) {
    size_t done = 0, n = 0;
    while (done < strlen(text)) {
        uint32_t rc = starttls_write(conn, (const uint8_t *)text + done, strlen(text) - done, &n);
        if (rc == STARTTLS_WANT_READ || rc == STARTTLS_WANT_WRITE) {
            wait_for(conn, rc);
            continue;
        }
        if (rc != STARTTLS_OK) return rc;
        done += n;
    }
    /* Push records a full socket did not take yet. */
    while (starttls_conn_wants_write(conn)) {
        uint32_t rc = starttls_write(conn, NULL, 0, &n);
        if (rc == STARTTLS_OK) break;
        if (rc != STARTTLS_WANT_WRITE && rc != STARTTLS_WANT_READ) return rc;
        wait_for(conn, rc);
    }
    return STARTTLS_OK;
}

/* One line with the bounded reader, polling as told; the line is NUL-terminated here. */
static uint32_t line(starttls_conn *conn, char *buf, size_t len) {
    size_t n = 0;
    for (;;) {
        /* Only wait on the socket when nothing is buffered inside the library. */
        uint32_t rc = starttls_conn_read_line(conn, (uint8_t *)buf, len - 1, &n);
        if (rc == STARTTLS_WANT_READ || rc == STARTTLS_WANT_WRITE) {
            CHECK(starttls_conn_pending(conn) == 0);
            wait_for(conn, rc);
            continue;
        }
        buf[rc == STARTTLS_OK ? n : 0] = '\0';
        return rc;
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT CA.pem\n", argv[0]);
        return 2;
    }
    CHECK(starttls_version_num() == STARTTLS_VERSION_NUM);
    CHECK(STARTTLS_VERSION_NUM == STARTTLS_VERSION_NUMBER);
    CHECK(strcmp(starttls_result_name(STARTTLS_WANT_READ), "STARTTLS_WANT_READ") == 0);
    CHECK(strcmp(starttls_result_name(STARTTLS_WANT_WRITE), "STARTTLS_WANT_WRITE") == 0);

    starttls_config_builder *b = starttls_config_builder_new();
    const starttls_config *config = NULL;
    CHECK(starttls_config_builder_set_ca_file(b, argv[2]) == STARTTLS_OK);
    CHECK(starttls_config_builder_build(b, &config) == STARTTLS_OK);
    starttls_conn *conn = NULL;
    uint32_t rc = starttls_connect(config, STARTTLS_PROTO_SMTP, "127.0.0.1",
                                   (uint16_t)atoi(argv[1]), "localhost", &conn);
    CHECK(rc == STARTTLS_OK);
    if (rc != STARTTLS_OK) return 1;
    CHECK(starttls_conn_cipher_bits(conn) >= 128);

    /* Certificate facts, for programs that pin fingerprints or watch expiry. */
    int64_t not_before = 0, not_after = 0;
    CHECK(starttls_conn_peer_cert_validity(conn, &not_before, &not_after) == STARTTLS_OK);
    CHECK(not_after > not_before && not_after > (int64_t)time(NULL));
    char text[512];
    CHECK(starttls_conn_peer_cert_subject(conn, text, sizeof text) > 0);
    CHECK(starttls_conn_peer_cert_issuer(conn, text, sizeof text) > 0);
    CHECK(starttls_conn_peer_cert_names(conn, text, sizeof text) > 0);
    CHECK(strstr(text, "DNS:localhost") != NULL);
    uint8_t cert_hash[32], again[32], key_hash[32];
    CHECK(starttls_conn_peer_cert_sha256(conn, false, cert_hash) == STARTTLS_OK);
    CHECK(starttls_conn_peer_cert_sha256(conn, false, again) == STARTTLS_OK);
    CHECK(starttls_conn_peer_cert_sha256(conn, true, key_hash) == STARTTLS_OK);
    CHECK(memcmp(cert_hash, again, 32) == 0 && memcmp(cert_hash, key_hash, 32) != 0);
    CHECK(starttls_conn_peer_cert_sha256(NULL, false, cert_hash) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_peer_cert_validity(NULL, NULL, NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_set_io_timeout_ms(conn, 29 * 60 * 1000) == STARTTLS_OK);

    int fd = starttls_conn_fd(conn);
    CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);

    /* The server waits for our EHLO: a read must not block. */
    uint8_t one[1];
    size_t n = 0;
    CHECK(starttls_read(conn, one, 1, &n) == STARTTLS_WANT_READ);
    CHECK(send_all(conn, "EHLO client.test\r\n") == STARTTLS_OK);

    /* One byte of a three-line reply: the rest is inside the library, not in the socket. */
    for (;;) {
        rc = starttls_read(conn, one, 1, &n);
        if (rc != STARTTLS_WANT_READ) break;
        wait_for(conn, rc);
    }
    CHECK(rc == STARTTLS_OK && n == 1 && one[0] == '2');
    size_t pending = starttls_conn_pending(conn);
    CHECK(pending > 0);
    printf("pending after a 1-byte read: %zu\n", pending);

    char buf[512];
    int lines = 0;
    do {
        rc = line(conn, buf, sizeof buf);
        lines++;
    } while (rc == STARTTLS_OK && strncmp(buf, "50 ", 3) != 0 && strncmp(buf, "250 ", 4) != 0 &&
             lines < 10);
    CHECK(rc == STARTTLS_OK);
    CHECK(lines == 3); /* "50-mx.test" (its "2" was read above), "250-AUTH PLAIN", "250 SIZE" */

    /* A line longer than the buffer is refused and nothing is consumed. */
    CHECK(send_all(conn, "QUIT\r\n") == STARTTLS_OK);
    char tiny[4];
    size_t got = 0;
    for (;;) {
        rc = starttls_conn_read_line(conn, (uint8_t *)tiny, sizeof tiny, &got);
        if (rc != STARTTLS_WANT_READ) break;
        wait_for(conn, rc);
    }
    CHECK(rc == STARTTLS_ERR_BUFFER_TOO_SMALL);
    CHECK(line(conn, buf, sizeof buf) == STARTTLS_OK);
    CHECK(strncmp(buf, "221 ", 4) == 0);

    for (;;) {
        rc = starttls_close(conn);
        if (rc != STARTTLS_WANT_WRITE && rc != STARTTLS_WANT_READ) break;
        wait_for(conn, rc);
    }
    CHECK(rc == STARTTLS_OK);
    starttls_conn_free(conn);
    starttls_config_free(config);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
