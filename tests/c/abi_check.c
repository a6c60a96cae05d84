/*
 * Checks the C ABI from C: version macros against the runtime string, result names, and that
 * every export survives NULL and bad input with an error code (never a crash). Prints
 * "N passed, M failed" and exits non-zero on any failure.
 */
#define _POSIX_C_SOURCE 200112L
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
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

int main(void) {
    /* Version macros agree with the runtime. */
    unsigned major = 99, minor = 99, patch = 99;
    CHECK(sscanf(starttls_version(), "starttls %u.%u.%u", &major, &minor, &patch) == 3);
    CHECK(major == STARTTLS_VERSION_MAJOR);
    CHECK(minor == STARTTLS_VERSION_MINOR);
    CHECK(patch == STARTTLS_VERSION_PATCH);
    CHECK(STARTTLS_VERSION_NUMBER ==
          STARTTLS_VERSION_MAJOR * 10000 + STARTTLS_VERSION_MINOR * 100 + STARTTLS_VERSION_PATCH);
    CHECK(strstr(starttls_version(), "rustls") != NULL);
    CHECK(strlen(starttls_crypto_provider()) > 0);

    /* Result names and descriptions. */
    CHECK(strcmp(starttls_result_name(STARTTLS_OK), "STARTTLS_OK") == 0);
    CHECK(strcmp(starttls_result_name(STARTTLS_ERR_NOT_OFFERED), "STARTTLS_ERR_NOT_OFFERED") == 0);
    CHECK(strcmp(starttls_result_name(STARTTLS_ERR_INJECTION), "STARTTLS_ERR_INJECTION") == 0);
    CHECK(strcmp(starttls_result_name(12345), "STARTTLS_ERR_UNKNOWN") == 0);
    CHECK(strlen(starttls_result_description(STARTTLS_ERR_TIMEOUT)) > 0);

    /* Protocol queries. */
    CHECK(starttls_supports_protocol(STARTTLS_PROTO_SMTP));
    CHECK(starttls_supports_protocol(STARTTLS_PROTO_TLS));
    CHECK(!starttls_supports_protocol(0));
    CHECK(!starttls_supports_protocol(0xffffffffu));
    CHECK(strcmp(starttls_protocol_name(STARTTLS_PROTO_IMAPS), "imaps") == 0);
    CHECK(starttls_protocol_name(0) == NULL);
    CHECK(starttls_protocol_name(STARTTLS_PROTO_IMAPS) == starttls_protocol_name(STARTTLS_PROTO_IMAPS));
    CHECK(starttls_protocol_default_port(STARTTLS_PROTO_SMTP) == 25);
    CHECK(starttls_protocol_default_port(STARTTLS_PROTO_IMAPS) == 993);
    CHECK(starttls_protocol_default_port(STARTTLS_PROTO_TLS) == 0);
    CHECK(starttls_protocol_default_port(0) == 0);
    CHECK(strcmp(starttls_result_description(STARTTLS_ERR_TIMEOUT), "timed out") == 0);

    /* NULL everywhere: an error code, never a crash. */
    CHECK(starttls_config_builder_set_ca_file(NULL, "x") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_add_ca_pem(NULL, NULL, 0) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_add_system_roots(NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_add_webpki_roots(NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_client_cert_files(NULL, "a", "b") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_client_cert_pem(NULL, NULL, 0, NULL, 0) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_client_name(NULL, "x") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_add_alpn(NULL, (const uint8_t *)"x", 1) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_min_tls_version(NULL, STARTTLS_TLS_1_3) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_max_tls_version(NULL, STARTTLS_TLS_1_2) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_policy(NULL, STARTTLS_POLICY_REQUIRE) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_timeout_ms(NULL, 100) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_phase_timeout_ms(NULL, STARTTLS_TIMEOUT_IO, 100) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_fetch_capabilities(NULL, true) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_key_log_from_env(NULL, true) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_dangerous_accept_any_certificate(NULL, true) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_log_callback(NULL, NULL, NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    const starttls_config *config = NULL;
    CHECK(starttls_config_builder_build(NULL, &config) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(config == NULL);
    starttls_config_builder_free(NULL);
    starttls_config_free(NULL);

    starttls_conn *conn = NULL;
    CHECK(starttls_connect(NULL, STARTTLS_PROTO_SMTP, "localhost", 25, NULL, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(conn == NULL);
    CHECK(starttls_upgrade_fd(NULL, STARTTLS_PROTO_SMTP, 0, "x", 0, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_handshake_fd(NULL, 0, "x", 0, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    uint8_t byte = 0;
    size_t n = 77;
    CHECK(starttls_read(NULL, &byte, 1, &n) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_write(NULL, &byte, 1, &n) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(n == 77); /* out-params untouched on failure */
    CHECK(starttls_close(NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    starttls_conn_free(NULL);
    char buf[64] = "untouched";
    CHECK(starttls_conn_error(NULL, buf, sizeof buf) == 0 && buf[0] == '\0');
    CHECK(starttls_conn_tls_version(NULL) == 0);
    CHECK(starttls_conn_cipher_suite_id(NULL) == 0);
    CHECK(starttls_conn_cipher_suite(NULL, buf, sizeof buf) == 0);
    CHECK(starttls_conn_key_exchange_group(NULL, buf, sizeof buf) == 0);
    CHECK(starttls_conn_auth_mechanism(NULL, buf, sizeof buf) == 0 && buf[0] == '\0');
    CHECK(starttls_conn_auth_channel_binding(NULL, buf, sizeof buf) == 0);
    CHECK(starttls_last_peer_cert_len(99) == 0);
    CHECK(starttls_last_peer_cert(99, &byte, 1, &n) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_alpn(NULL, &byte, 1, &n) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_peer_cert_count(NULL) == 0);
    CHECK(starttls_conn_peer_cert(NULL, 0, &byte, 1, &n) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_peer_cert_len(NULL, 0) == 0);
    CHECK(starttls_conn_greeting(NULL, buf, sizeof buf) == 0);
    CHECK(starttls_conn_capabilities_before_tls(NULL, buf, sizeof buf) == 0);
    CHECK(starttls_conn_capabilities(NULL, buf, sizeof buf) == 0);
    CHECK(starttls_conn_fetch_capabilities(NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_authenticate(NULL, "u", "p", NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_authenticate_database(NULL, "u", "p", "db") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_authenticate_token(NULL, "u", "t", NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_authenticate_external(NULL, NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_quit(NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_fd(NULL) == -1);
    CHECK(!starttls_conn_is_encrypted(NULL));
    CHECK(starttls_conn_plaintext_reason(NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_conn_starttls_offered(NULL) == -1);
    CHECK(!starttls_conn_is_resumed(NULL));
    CHECK(starttls_conn_verification(NULL) == STARTTLS_VERIFY_NOT_ENCRYPTED);
    CHECK(starttls_conn_verification_problem(NULL, buf, sizeof buf) == 0);

    /* The server side: NULL and bad input everywhere. */
    const starttls_server_config *sconfig = NULL;
    CHECK(starttls_server_config_builder_set_certificate_files(NULL, "c", "k") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_add_certificate_pem(NULL, NULL, 0, NULL, 0) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_add_sni_certificate_pem(NULL, "n", NULL, 0, NULL, 0) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_set_client_ca_file(NULL, "x", STARTTLS_CLIENT_AUTH_REQUIRED) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_add_alpn(NULL, (const uint8_t *)"x", 1) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_set_min_tls_version(NULL, STARTTLS_TLS_1_3) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_set_session_tickets(NULL, true) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_set_hostname(NULL, "x") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_set_greeting(NULL, "x") == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_set_timeout_ms(NULL, 1) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_set_log_callback(NULL, NULL, NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_build(NULL, &sconfig) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(sconfig == NULL);
    starttls_server_config_builder_free(NULL);
    starttls_server_config_free(NULL);
    CHECK(starttls_accept_fd(NULL, STARTTLS_PROTO_SMTP, 0, 0, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_accept_tls_fd(NULL, 0, NULL, 0, 0, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_accept_tls_fd(NULL, 0, NULL, 5, 0, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    {
        /* An owned fd is closed on every failure, bad arguments included. */
        int fds[2];
        CHECK(pipe(fds) == 0);
        CHECK(starttls_accept_tls_fd(NULL, fds[0], NULL, 5, STARTTLS_FD_TAKE_OWNERSHIP, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
        CHECK(fcntl(fds[0], F_GETFD) == -1);
        CHECK(starttls_upgrade_fd(NULL, STARTTLS_PROTO_SMTP, fds[1], "x", STARTTLS_FD_TAKE_OWNERSHIP, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
        CHECK(fcntl(fds[1], F_GETFD) == -1);
        /* ... and an unknown flag bit beside the ownership flag (it used to leak the fd). */
        const uint32_t bad = STARTTLS_FD_TAKE_OWNERSHIP | 0x100u;
        int more[4];
        CHECK(pipe(more) == 0 && pipe(more + 2) == 0);
        CHECK(starttls_upgrade_fd(NULL, STARTTLS_PROTO_SMTP, more[0], "x", bad, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
        CHECK(starttls_handshake_fd(NULL, more[1], "x", bad, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
        CHECK(starttls_accept_fd(NULL, STARTTLS_PROTO_SMTP, more[2], bad, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
        CHECK(starttls_accept_tls_fd(NULL, more[3], NULL, 0, bad, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
        for (int i = 0; i < 4; i++) CHECK(fcntl(more[i], F_GETFD) == -1);
        /* An unknown bit alone: the fd stays the caller's. */
        CHECK(pipe(fds) == 0);
        CHECK(starttls_upgrade_fd(NULL, STARTTLS_PROTO_SMTP, fds[0], "x", 0x100u, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
        CHECK(fcntl(fds[0], F_GETFD) != -1);
        close(fds[0]);
        close(fds[1]);
    }
    CHECK(!starttls_conn_is_server(NULL));
    CHECK(starttls_conn_peer_name(NULL, buf, sizeof buf) == 0);
    starttls_server_config_builder *sb = starttls_server_config_builder_new();
    CHECK(starttls_server_config_builder_set_certificate_files(sb, "/nonexistent/c.pem", "/nonexistent/k.pem") == STARTTLS_ERR_CONFIG);
    CHECK(starttls_server_config_builder_set_client_ca_file(sb, "/nonexistent/ca.pem", 9) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_server_config_builder_set_greeting(sb, "two\r\nlines") == STARTTLS_OK); /* checked when built */
    CHECK(starttls_server_config_builder_build(sb, &sconfig) == STARTTLS_ERR_CONFIG);    /* no certificate */
    CHECK(sconfig == NULL);

    /* The thread-local message: snprintf-style, truncated and NUL-terminated. */
    size_t full = starttls_last_error(NULL, 0);
    CHECK(full > 0);
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    CHECK(starttls_last_error(tiny, sizeof tiny) == full);
    CHECK(tiny[7] == '\0' && strlen(tiny) == 7);

    /* Bad values in a live builder: refused, and the builder stays usable. */
    starttls_config_builder *b = starttls_config_builder_new();
    CHECK(b != NULL);
    CHECK(starttls_config_builder_set_policy(b, 7) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_min_tls_version(b, 0x0301) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_max_tls_version(b, 0x0302) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_timeout_ms(b, 0) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_phase_timeout_ms(b, 99, 10) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_add_alpn(b, (const uint8_t *)"", 0) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_ca_file(b, "/nonexistent/ca.pem") == STARTTLS_ERR_CONFIG);
    starttls_last_error(buf, sizeof buf);
    CHECK(strstr(buf, "/nonexistent") != NULL);
    CHECK(starttls_config_builder_add_ca_pem(b, (const uint8_t *)"junk", 4) == STARTTLS_ERR_CONFIG);
    CHECK(starttls_config_builder_set_client_name(b, NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_config_builder_set_policy(b, STARTTLS_POLICY_OPPORTUNISTIC) == STARTTLS_OK);
    CHECK(starttls_config_builder_set_phase_timeout_ms(b, STARTTLS_TIMEOUT_CONNECT, 2000) == STARTTLS_OK);
    CHECK(starttls_config_builder_build(b, NULL) == STARTTLS_ERR_INVALID_ARGUMENT); /* consumed */

    b = starttls_config_builder_new();
    CHECK(starttls_config_builder_build(b, &config) == STARTTLS_OK);
    CHECK(config != NULL);
    conn = NULL;
    CHECK(starttls_connect(config, 999, "localhost", 25, NULL, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_connect(config, STARTTLS_PROTO_SMTP, NULL, 25, NULL, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_connect(config, STARTTLS_PROTO_SMTP, "localhost", 25, NULL, NULL) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_upgrade_fd(config, STARTTLS_PROTO_SMTP, -1, "x", 0, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_upgrade_fd(config, STARTTLS_PROTO_SMTP, 0, "x", 0x80, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    /* stdin is not a connected TCP socket, and is borrowed: it must stay open. */
    CHECK(starttls_upgrade_fd(config, STARTTLS_PROTO_SMTP, 0, "x", 0, &conn) == STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(conn == NULL);
    starttls_config_free(config);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
