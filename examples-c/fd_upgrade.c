/*
 * fd_upgrade: connect a socket yourself, then let the library run the protocol's STARTTLS
 * dialog and the handshake on it. The library only borrows the fd: it is still open (and ours
 * to close) after the connection is freed.
 *
 *   fd_upgrade PROTOCOL HOST PORT SERVER_NAME [CA_FILE]
 *
 * PROTOCOL is a scheme name: smtp, submission, lmtp, imap, pop3, ...
 *
 * Build: cc fd_upgrade.c -o fd_upgrade $(pkg-config --cflags --libs starttls)
 */
#define _POSIX_C_SOURCE 200112L
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <starttls.h>

static int connect_tcp(const char *host, const char *port) {
    struct addrinfo hints, *res = NULL, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        return -1;
    }
    int fd = -1;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static uint32_t protocol_by_name(const char *name) {
    for (uint32_t p = 1; p < 64; p++) {
        const char *n = starttls_protocol_name(p);
        if (n != NULL && strcmp(n, name) == 0) {
            return p;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s PROTOCOL HOST PORT SERVER_NAME [CA_FILE]\n", argv[0]);
        return 2;
    }
    uint32_t protocol = protocol_by_name(argv[1]);
    if (protocol == 0) {
        fprintf(stderr, "unknown protocol %s\n", argv[1]);
        return 2;
    }
    int fd = connect_tcp(argv[2], argv[3]);
    if (fd < 0) {
        perror("connect");
        return 1;
    }

    char msg[1024];
    const starttls_config *config = NULL;
    starttls_config_builder *b = starttls_config_builder_new();
    uint32_t rc = argc > 5 ? starttls_config_builder_set_ca_file(b, argv[5]) : STARTTLS_OK;
    if (rc != STARTTLS_OK) {
        starttls_config_builder_free(b);
    } else {
        rc = starttls_config_builder_build(b, &config);
    }
    if (rc != STARTTLS_OK) {
        starttls_last_error(msg, sizeof msg);
        fprintf(stderr, "config: %s: %s\n", starttls_result_name(rc), msg);
        close(fd);
        return 1;
    }

    starttls_conn *conn = NULL;
    rc = starttls_upgrade_fd(config, protocol, fd, argv[4], 0 /* borrow the fd */, &conn);
    starttls_config_free(config);
    int status = 0;
    if (rc != STARTTLS_OK) {
        starttls_last_error(msg, sizeof msg);
        fprintf(stderr, "upgrade: %s: %s\n", starttls_result_name(rc), msg);
        status = 1;
    } else {
        char suite[128];
        starttls_conn_cipher_suite(conn, suite, sizeof suite);
        printf("upgraded fd %d: 0x%04x %s\n", starttls_conn_fd(conn),
               starttls_conn_tls_version(conn), suite);
        /* The protocol-aware part inside TLS: ask for the capabilities again (EHLO, CAPA, ...). */
        char caps[2048];
        if ((rc = starttls_conn_fetch_capabilities(conn)) == STARTTLS_OK) {
            starttls_conn_capabilities(conn, caps, sizeof caps);
            printf("capabilities inside TLS: %s\n", caps);
        } else {
            starttls_conn_error(conn, msg, sizeof msg);
            fprintf(stderr, "capabilities: %s: %s\n", starttls_result_name(rc), msg);
            status = 1;
        }
        starttls_conn_quit(conn); /* QUIT and close_notify; the socket stays ours */
        starttls_conn_free(conn);
    }

    /* Borrowed means borrowed: the fd is still open here, and ours to close. */
    if (fcntl(fd, F_GETFD) == -1) {
        fprintf(stderr, "the library closed a borrowed fd\n");
        status = 1;
    } else {
        printf("fd %d still open after free\n", fd);
    }
    close(fd);
    return status;
}
