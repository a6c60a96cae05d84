/*
 * Bulk transfer through the library's C ABI, for bench/run.sh: connects to the Rust `sink`
 * (implicit TLS), announces the size, writes MIB MiB in WRITE_KIB writes, waits for the ack.
 *
 *   c_abi_bulk PORT CA MIB WRITE_KIB
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <starttls.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    int mib = atoi(argv[3]), kib = atoi(argv[4]);
    starttls_config_builder *b = starttls_config_builder_new();
    const starttls_config *config = NULL;
    if (starttls_config_builder_set_ca_file(b, argv[2]) != STARTTLS_OK ||
        starttls_config_builder_build(b, &config) != STARTTLS_OK) {
        fprintf(stderr, "config failed\n");
        return 1;
    }
    starttls_conn *conn = NULL;
    if (starttls_connect(config, STARTTLS_PROTO_TLS, "localhost", (uint16_t)atoi(argv[1]), NULL, &conn) !=
        STARTTLS_OK) {
        fprintf(stderr, "connect failed\n");
        return 1;
    }
    unsigned long long total = (unsigned long long)mib << 20, sent = 0;
    unsigned char size[8];
    for (int i = 0; i < 8; i++) size[i] = (unsigned char)(total >> (56 - 8 * i));
    size_t n = 0, chunk = (size_t)kib * 1024;
    unsigned char *data = malloc(chunk);
    memset(data, 0x5a, chunk);
    double start = now();
    starttls_write(conn, size, 8, &n);
    while (sent < total) {
        if (starttls_write(conn, data, chunk, &n) != STARTTLS_OK) {
            fprintf(stderr, "write failed\n");
            return 1;
        }
        sent += n;
    }
    unsigned char ack;
    starttls_read(conn, &ack, 1, &n);
    double secs = now() - start;
    printf("bulk mode=c-abi write_kib=%d mib=%d secs=%.3f mib_per_s=%.1f\n", kib, mib, secs, mib / secs);
    starttls_close(conn);
    starttls_conn_free(conn);
    starttls_config_free(config);
    free(data);
    return 0;
}
