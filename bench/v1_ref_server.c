/* The minimal v1 announce sink: the floor no node can beat on one core.
 *
 * Single-threaded epoll: accept every pending connection (listen backlog = somaxconn, as a Go
 * listener uses), read until a newline or EOF, close. No parsing, no store. Prints
 *   listening 127.0.0.1:PORT
 * once listening, then, each time it runs out of work with more messages taken in than it last
 * reported (and at exit on SIGTERM),
 *   count N
 * (line-buffered), so that a benchmark sees when a burst has been taken in, at no cost while
 * the server is busy.
 *
 * Build: gcc -O2 -o v1_ref_server v1_ref_server.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static int somaxconn(void) {
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    int n = 4096;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = 4096;
        fclose(f);
    }
    return n;
}

int main(int argc, char **argv) {
    int port = 0, opt;
    while ((opt = getopt(argc, argv, "p:")) != -1) {
        if (opt == 'p') port = atoi(optarg);
        else {
            fprintf(stderr, "usage: %s [-p PORT (0: any)]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&at, sizeof at) < 0 || listen(ls, somaxconn()) < 0) {
        perror("listen");
        return 1;
    }
    socklen_t alen = sizeof at;
    getsockname(ls, (struct sockaddr *)&at, &alen);
    printf("listening 127.0.0.1:%d\n", ntohs(at.sin_port));

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event events[256];
    char buf[65536];
    unsigned long long count = 0, reported = 0;
    while (!stopping) {
        int n = epoll_wait(ep, events, 256, 0);
        if (n == 0) {
            if (count != reported) {
                printf("count %llu\n", count);
                reported = count;
            }
            n = epoll_wait(ep, events, 256, 200);
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int e = 0; e < n; e++) {
            int fd = events[e].data.fd;
            if (fd == ls) {
                for (;;) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break; /* EAGAIN: queue drained (or a transient error) */
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            int finished = 0;
            for (;;) {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r > 0) {
                    if (memchr(buf, '\n', (size_t)r)) {
                        finished = 1;
                        break;
                    }
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR)) finished = 1;
                break;
            }
            if (finished) {
                close(fd); /* also leaves the epoll set */
                count++;
            }
        }
    }
    printf("count %llu\n", count);
    return 0;
}
