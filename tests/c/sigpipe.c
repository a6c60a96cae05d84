/* A C program with SIGPIPE's default disposition (which kills the process) writes to a peer that
 * has gone away: every write must come back as an error code, and the program must live on. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "starttls.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT CA.pem\n", argv[0]);
        return 2;
    }
    /* What a C program has unless it says otherwise (the test harness may have set SIG_IGN). */
    signal(SIGPIPE, SIG_DFL);

    starttls_config_builder *b = starttls_config_builder_new();
    const starttls_config *config = NULL;
    if (starttls_config_builder_set_ca_file(b, argv[2]) != STARTTLS_OK ||
        starttls_config_builder_build(b, &config) != STARTTLS_OK) {
        fprintf(stderr, "config failed\n");
        return 1;
    }
    starttls_conn *conn = NULL;
    uint32_t rc = starttls_connect(config, STARTTLS_PROTO_TLS, "127.0.0.1",
                                   (uint16_t)atoi(argv[1]), "localhost", &conn);
    if (rc != STARTTLS_OK) {
        fprintf(stderr, "connect: %s\n", starttls_result_name(rc));
        return 1;
    }
    /* The server closes at once: wait for its end. */
    uint8_t buf[256];
    size_t n = 0;
    while (starttls_read(conn, buf, sizeof buf, &n) == STARTTLS_OK && n > 0) {
    }
    static uint8_t data[64 * 1024];
    uint32_t last = STARTTLS_OK;
    int errors = 0;
    for (int i = 0; i < 20 && errors < 3; i++) {
        last = starttls_write(conn, data, sizeof data, &n);
        if (last != STARTTLS_OK) {
            errors++;
        }
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    printf("alive after writing to a closed peer: %d error(s), last %s\n", errors,
           starttls_result_name(last));
    starttls_conn_free(conn);
    starttls_config_free(config);
    return errors > 0 ? 0 : 1;
}
