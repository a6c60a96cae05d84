/*
 * imap_idle: log in to an IMAP server over STARTTLS, SELECT INBOX, IDLE, and wait in one poll()
 * loop on both the connection and stdin: what the server says is printed as it comes; typing
 * `done` ends the IDLE, logs out and closes with close_notify.
 *
 *   IMAP_PASSWORD=... imap_idle HOST PORT USER [CA_FILE [SERVER_NAME]]
 *
 * The password comes from the environment, never the command line (ps would show it).
 * Build: cc imap_idle.c -o imap_idle $(pkg-config --cflags --libs starttls)
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <starttls.h>

static int fail(const char *what, uint32_t rc, const starttls_conn *conn) {
    char msg[1024];
    if (conn != NULL) {
        starttls_conn_error(conn, msg, sizeof msg);
    } else {
        starttls_last_error(msg, sizeof msg);
    }
    fprintf(stderr, "imap_idle: %s: %s: %s\n", what, starttls_result_name(rc), msg);
    return 1;
}

/* Waits until the socket is ready for what the library asked for. */
static void wait_for(starttls_conn *conn, uint32_t want) {
    struct pollfd p;
    p.fd = starttls_conn_fd(conn);
    p.events = want == STARTTLS_WANT_WRITE ? POLLOUT : POLLIN;
    p.revents = 0;
    poll(&p, 1, -1);
}

/* Sends a whole command, in blocking or non-blocking mode. */
static uint32_t send_line(starttls_conn *conn, const char *line) {
    size_t done = 0, n = 0, len = strlen(line);
    uint32_t rc;
    while (done < len) {
        rc = starttls_write(conn, (const uint8_t *)line + done, len - done, &n);
        if (rc == STARTTLS_WANT_READ || rc == STARTTLS_WANT_WRITE) {
            wait_for(conn, rc);
            continue;
        }
        if (rc != STARTTLS_OK) return rc;
        done += n;
    }
    while (starttls_conn_wants_write(conn)) {
        rc = starttls_write(conn, NULL, 0, &n);
        if (rc == STARTTLS_OK) break;
        if (rc != STARTTLS_WANT_READ && rc != STARTTLS_WANT_WRITE) return rc;
        wait_for(conn, rc);
    }
    return STARTTLS_OK;
}

/* One line (NUL-terminated, CRLF kept), waiting as the library asks. */
static uint32_t read_line(starttls_conn *conn, char *buf, size_t len) {
    size_t n = 0;
    uint32_t rc;
    for (;;) {
        rc = starttls_conn_read_line(conn, (uint8_t *)buf, len - 1, &n);
        if (rc == STARTTLS_WANT_READ || rc == STARTTLS_WANT_WRITE) {
            wait_for(conn, rc);
            continue;
        }
        if (rc == STARTTLS_OK && n == 0) rc = STARTTLS_ERR_CLOSED;
        buf[rc == STARTTLS_OK ? n : 0] = '\0';
        return rc;
    }
}

/* Sends `TAG COMMAND` and prints untagged lines until the tagged answer; 0 if it is OK. */
static int command(starttls_conn *conn, const char *tag, const char *cmd) {
    char line[8192];
    uint32_t rc;
    size_t taglen = strlen(tag);
    snprintf(line, sizeof line, "%s %s\r\n", tag, cmd);
    rc = send_line(conn, line);
    if (rc != STARTTLS_OK) return fail(cmd, rc, conn);
    for (;;) {
        rc = read_line(conn, line, sizeof line);
        if (rc != STARTTLS_OK) return fail(cmd, rc, conn);
        if (strncmp(line, tag, taglen) == 0 && line[taglen] == ' ') {
            printf("S: %s", line);
            return strncmp(line + taglen + 1, "OK", 2) == 0 ? 0 : 1;
        }
        printf("S: %s", line);
    }
}

int main(int argc, char **argv) {
    const char *password = getenv("IMAP_PASSWORD");
    starttls_config_builder *b;
    const starttls_config *config = NULL;
    starttls_conn *conn = NULL;
    uint32_t rc;
    char line[8192];
    int fd, idling = 1, status = 0;

    if (argc < 4 || password == NULL) {
        fprintf(stderr, "usage: IMAP_PASSWORD=... %s HOST PORT USER [CA_FILE [SERVER_NAME]]\n",
                argv[0]);
        return 2;
    }
    b = starttls_config_builder_new();
    if (argc > 4 && (rc = starttls_config_builder_set_ca_file(b, argv[4])) != STARTTLS_OK) {
        starttls_config_builder_free(b);
        return fail("CA file", rc, NULL);
    }
    if ((rc = starttls_config_builder_build(b, &config)) != STARTTLS_OK) {
        return fail("config", rc, NULL);
    }
    rc = starttls_connect(config, STARTTLS_PROTO_IMAP, argv[1], (uint16_t)atoi(argv[2]),
                          argc > 5 ? argv[5] : NULL, &conn);
    starttls_config_free(config); /* the connection keeps what it needs */
    if (rc != STARTTLS_OK) return fail("connect", rc, NULL);

    /* Logging in needs no capabilities fetched first: the library asks inside TLS. */
    rc = starttls_conn_authenticate(conn, argv[3], password, NULL);
    if (rc != STARTTLS_OK) {
        status = fail("login", rc, conn);
        starttls_conn_free(conn);
        return status;
    }
    {
        char mechanism[32], binding[32];
        starttls_conn_auth_mechanism(conn, mechanism, sizeof mechanism);
        starttls_conn_auth_channel_binding(conn, binding, sizeof binding);
        fprintf(stderr, "imap_idle: logged in with %s%s%s\n", mechanism,
                binding[0] ? ", bound to " : "", binding);
    }
    if (command(conn, "a1", "SELECT INBOX") != 0) {
        starttls_conn_free(conn);
        return 1;
    }
    /* An IDLE waits up to 29 minutes (RFC 2177), longer than a usual I/O timeout. */
    starttls_conn_set_io_timeout_ms(conn, 29u * 60u * 1000u);
    if (send_line(conn, "a2 IDLE\r\n") != STARTTLS_OK || read_line(conn, line, sizeof line) ||
        line[0] != '+') {
        fprintf(stderr, "imap_idle: the server did not accept IDLE: %s", line);
        starttls_conn_free(conn);
        return 1;
    }
    printf("S: %s", line);
    printf("idling; type `done` to stop\n");
    fflush(stdout);

    fd = starttls_conn_fd(conn);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (idling) {
        struct pollfd p[2];
        /* What the library already holds is read before waiting: poll() would not see it. */
        while (starttls_conn_pending(conn) > 0) {
            if ((rc = read_line(conn, line, sizeof line)) != STARTTLS_OK) break;
            printf("S: %s", line);
        }
        fflush(stdout);
        p[0].fd = fd;
        p[0].events = POLLIN;
        p[1].fd = STDIN_FILENO;
        p[1].events = POLLIN;
        p[0].revents = p[1].revents = 0;
        if (poll(p, 2, -1) < 0) break;
        if (p[0].revents) {
            size_t n = 0;
            rc = starttls_conn_read_line(conn, (uint8_t *)line, sizeof line - 1, &n);
            if (rc == STARTTLS_WANT_READ || rc == STARTTLS_WANT_WRITE) continue;
            if (rc != STARTTLS_OK || n == 0) {
                status = fail("idle", rc == STARTTLS_OK ? STARTTLS_ERR_CLOSED : rc, conn);
                break;
            }
            line[n] = '\0';
            printf("S: %s", line);
        }
        if (p[1].revents) {
            char typed[64];
            if (fgets(typed, sizeof typed, stdin) == NULL || strncmp(typed, "done", 4) == 0) {
                idling = 0;
            }
        }
    }
    if (!idling) {
        /* DONE ends the IDLE; its tagged answer follows. */
        if (send_line(conn, "DONE\r\n") != STARTTLS_OK) status = 1;
        while (status == 0 && read_line(conn, line, sizeof line) == STARTTLS_OK) {
            printf("S: %s", line);
            if (strncmp(line, "a2 ", 3) == 0) break;
        }
        if (status == 0 && command(conn, "a3", "LOGOUT") != 0) status = 1;
        for (;;) {
            rc = starttls_close(conn);
            if (rc != STARTTLS_WANT_READ && rc != STARTTLS_WANT_WRITE) break;
            wait_for(conn, rc);
        }
        if (rc != STARTTLS_OK) status = fail("close", rc, conn);
    }
    starttls_conn_free(conn);
    fflush(stdout);
    return status;
}
