/*
 * DANE and pins from C: a TLSA set built by starttls_tlsa_set_add and _add_text, connect and
 * fd upgrade with it, what the connection says DANE decided, a record set that matches nothing
 * (the presented leaf and its pin still reachable), and pins (bad ones refused, pin-only).
 *
 * usage: dane PORT RECORD_TEXT SPKI_SHA256_HEX PIN
 *   PORT: an SMTP server (the library's) taking 4 connections, whose key RECORD_TEXT ("3 1 1
 *   ...") and SPKI_SHA256_HEX (the same digest in hex) name, and whose key pin is PIN. No config
 *   here trusts its CA. Prints "N passed, M failed"; exits non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200112L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <starttls.h>

static int passed, failed;

#define CHECK(cond)                                                   \
    do {                                                              \
        if (cond) {                                                   \
            passed++;                                                 \
        } else {                                                      \
            failed++;                                                 \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
        }                                                             \
    } while (0)

static const starttls_config *plain_config(void) {
    starttls_config_builder *b = starttls_config_builder_new();
    const starttls_config *c = NULL;
    starttls_config_builder_set_timeout_ms(b, 5000);
    if (starttls_config_builder_build(b, &c) != STARTTLS_OK) return NULL;
    return c;
}

static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = 0;
    while (hex[0] && hex[1] && n < cap) {
        unsigned v;
        if (sscanf(hex, "%2x", &v) != 1) break;
        out[n++] = (uint8_t)v;
        hex += 2;
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: dane PORT RECORD SPKI_SHA256_HEX PIN\n");
        return 2;
    }
    uint16_t port = (uint16_t)atoi(argv[1]);
    const char *record = argv[2], *pin = argv[4];
    uint8_t digest[32];
    CHECK(unhex(argv[3], digest, sizeof digest) == 32);
    char buf[256];
    const starttls_config *config = plain_config();
    CHECK(config != NULL);

    /* Building a set: text and fields; bad text is refused and changes nothing. */
    starttls_tlsa_set *set = starttls_tlsa_set_new();
    CHECK(starttls_tlsa_set_add_text(set, "3 1 1 zz") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_tlsa_set_add_text(set, "3 1") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_tlsa_set_count(set) == 0);
    CHECK(starttls_tlsa_set_add(set, 9, 9, 9, (const uint8_t *)"x", 1) == STARTTLS_OK); /* unusable */
    CHECK(starttls_tlsa_set_add_text(set, record) == STARTTLS_OK);
    CHECK(starttls_tlsa_set_count(set) == 2);
    CHECK(starttls_tlsa_set_add(NULL, 3, 1, 1, digest, 32) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_tlsa_set_add(set, 3, 1, 1, NULL, 32) == STARTTLS_ERR_INVALID_ARGUMENT);

    /* 1. DANE-EE, under a name the certificate does not have, from a CA nobody trusts. */
    starttls_conn *conn = NULL;
    CHECK(starttls_connect_dane(config, STARTTLS_PROTO_SMTP, "127.0.0.1", port,
                                "mx.wrong.example", set, &conn) == STARTTLS_OK);
    CHECK(conn != NULL);
    CHECK(starttls_conn_verification(conn) == STARTTLS_VERIFY_VERIFIED);
    CHECK(starttls_conn_dane(conn) == STARTTLS_DANE_MATCHED);
    size_t n = starttls_conn_dane_matched(conn, buf, sizeof buf);
    CHECK(n == strlen(record) && strcmp(buf, record) == 0);
    starttls_conn_free(conn);
    starttls_tlsa_set_free(set);

    /* 2. A set that matches nothing: refused, the records named, the leaf and its pin shown. */
    starttls_tlsa_set *wrong = starttls_tlsa_set_new();
    digest[0] ^= 0xff;
    CHECK(starttls_tlsa_set_add(wrong, 3, 1, 1, digest, 32) == STARTTLS_OK);
    conn = NULL;
    CHECK(starttls_connect_dane(config, STARTTLS_PROTO_SMTP, "127.0.0.1", port, "localhost",
                                wrong, &conn) == STARTTLS_ERR_CERTIFICATE);
    CHECK(conn == NULL);
    starttls_last_error(buf, sizeof buf);
    CHECK(strstr(buf, "no TLSA record authenticated") != NULL);
    CHECK(starttls_last_peer_cert_count() >= 1);
    size_t leaf_len = starttls_last_peer_cert_len(0);
    uint8_t *leaf = malloc(leaf_len);
    size_t got = 0;
    CHECK(starttls_last_peer_cert(0, leaf, leaf_len, &got) == STARTTLS_OK && got == leaf_len);
    CHECK(starttls_cert_pin_sha256(leaf, leaf_len, buf, sizeof buf) == 44);
    CHECK(strcmp(buf, pin) == 0);
    CHECK(starttls_cert_pin_sha256((const uint8_t *)"junk", 4, buf, sizeof buf) == 0 && buf[0] == 0);
    free(leaf);
    CHECK(starttls_connect_dane(config, STARTTLS_PROTO_SMTP, "127.0.0.1", port, NULL, NULL,
                                &conn) == STARTTLS_ERR_INVALID_ARGUMENT);

    /* 3. The fd face: the caller's own socket, DANE, borrowed fd left open. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    starttls_tlsa_set *again = starttls_tlsa_set_new();
    digest[0] ^= 0xff;
    CHECK(starttls_tlsa_set_add(again, 3, 1, 1, digest, 32) == STARTTLS_OK);
    conn = NULL;
    CHECK(starttls_upgrade_fd_dane(config, STARTTLS_PROTO_SMTP, fd, "localhost", 0, again,
                                   &conn) == STARTTLS_OK);
    CHECK(starttls_conn_dane(conn) == STARTTLS_DANE_MATCHED);
    starttls_conn_free(conn);
    starttls_tlsa_set_free(again);
    starttls_tlsa_set_free(wrong);
    CHECK(close(fd) == 0); /* still ours */

    /* 4. Pins: a malformed one is refused at once; pin-only authenticates by the pin. */
    starttls_config_builder *b = starttls_config_builder_new();
    CHECK(starttls_config_builder_add_pin_sha256(b, "not a pin") == STARTTLS_ERR_INVALID_ARGUMENT);
    snprintf(buf, sizeof buf, "sha256//%s", pin);
    CHECK(starttls_config_builder_add_pin_sha256(b, buf) == STARTTLS_OK);
    CHECK(starttls_config_builder_set_pin_only(b, 1) == STARTTLS_OK);
    CHECK(starttls_config_builder_set_timeout_ms(b, 5000) == STARTTLS_OK);
    const starttls_config *pinned = NULL;
    CHECK(starttls_config_builder_build(b, &pinned) == STARTTLS_OK);
    conn = NULL;
    CHECK(starttls_connect(pinned, STARTTLS_PROTO_SMTP, "127.0.0.1", port, "any.name", &conn) ==
          STARTTLS_OK);
    CHECK(starttls_conn_verification(conn) == STARTTLS_VERIFY_VERIFIED);
    CHECK(starttls_conn_dane(conn) == STARTTLS_DANE_NONE);
    starttls_conn_free(conn);
    starttls_config_free(pinned);

    b = starttls_config_builder_new();
    CHECK(starttls_config_builder_set_pin_only(b, 1) == STARTTLS_OK);
    pinned = NULL;
    CHECK(starttls_config_builder_build(b, &pinned) == STARTTLS_ERR_CONFIG && pinned == NULL);

    starttls_config_free(config);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
