/*
 * One config shared by many threads: each thread connects (implicit TLS), and once every
 * thread is connected the config is freed while the connections are still in use (they keep
 * what they need alive). Each then reads the server's line, answers, and closes.
 *
 *   threads PORT CA_FILE THREADS
 *
 * Prints "N passed, M failed".
 */
#define _POSIX_C_SOURCE 200112L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <starttls.h>

static const starttls_config *config;
static uint16_t port;
static pthread_barrier_t connected, freed;
static int failures;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, uint32_t rc) {
    char msg[256];
    starttls_last_error(msg, sizeof msg);
    fprintf(stderr, "%s: %s: %s\n", what, starttls_result_name(rc), msg);
    pthread_mutex_lock(&lock);
    failures++;
    pthread_mutex_unlock(&lock);
}

static void *worker(void *arg) {
    (void)arg;
    starttls_conn *conn = NULL;
    uint32_t rc = starttls_connect(config, STARTTLS_PROTO_TLS, "localhost", port, NULL, &conn);
    if (rc != STARTTLS_OK) {
        fail("connect", rc);
    }
    pthread_barrier_wait(&connected);
    pthread_barrier_wait(&freed); /* the config is gone now */
    if (conn == NULL) {
        return NULL;
    }
    char line[64];
    size_t n = 0;
    rc = starttls_read(conn, (uint8_t *)line, sizeof line - 1, &n);
    if (rc != STARTTLS_OK || n == 0 || strncmp(line, "hello", 5) != 0) {
        fail("read", rc);
    }
    rc = starttls_write(conn, (const uint8_t *)"bye\n", 4, &n);
    if (rc != STARTTLS_OK) {
        fail("write", rc);
    }
    rc = starttls_close(conn);
    if (rc != STARTTLS_OK) {
        fail("close", rc);
    }
    starttls_conn_free(conn);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s PORT CA_FILE THREADS\n", argv[0]);
        return 2;
    }
    port = (uint16_t)atoi(argv[1]);
    int count = atoi(argv[3]);
    starttls_config_builder *b = starttls_config_builder_new();
    uint32_t rc = starttls_config_builder_set_ca_file(b, argv[2]);
    if (rc == STARTTLS_OK) {
        rc = starttls_config_builder_set_timeout_ms(b, 10000);
    }
    if (rc != STARTTLS_OK) {
        starttls_config_builder_free(b);
        fail("config", rc);
        return 1;
    }
    if ((rc = starttls_config_builder_build(b, &config)) != STARTTLS_OK) {
        fail("build", rc);
        return 1;
    }
    pthread_t threads[64];
    if (count < 1 || count > 64) {
        return 2;
    }
    pthread_barrier_init(&connected, NULL, (unsigned)count + 1);
    pthread_barrier_init(&freed, NULL, (unsigned)count + 1);
    for (int i = 0; i < count; i++) {
        pthread_create(&threads[i], NULL, worker, NULL);
    }
    pthread_barrier_wait(&connected);
    starttls_config_free(config);
    config = NULL;
    pthread_barrier_wait(&freed);
    for (int i = 0; i < count; i++) {
        pthread_join(threads[i], NULL);
    }
    printf("%d passed, %d failed\n", count - failures, failures);
    return failures == 0 ? 0 : 1;
}
