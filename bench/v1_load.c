/* v1 announce load generator: one TCP connection per message, as the seed's sendWireMsg.
 *
 * Each message: dial HOST:PORT (non-blocking), write one v1 "announce" line (docs/WIRE.md,
 * the bytes Go's json.Encoder writes), close. -c connections are in flight at once (epoll);
 * -n messages in total or -t seconds, whichever comes first; a connection still in flight
 * -g seconds after the time limit counts as a failure. Info hashes cycle over -k keys;
 * provider addresses are distinct per message, from index -o on (so that runs against one
 * node never repeat an address). Latency is dial start to close, client side.
 * -s N spreads the connections over N loopback source addresses (127.0.0.2 on), so that the
 * kernel's ephemeral ports, held 60 s in TIME_WAIT by each close, do not run short across
 * repeated bursts (a limit of one client host, not of the server); default 1: the kernel's
 * choice of source, as a plain client.
 *
 * Prints one line:
 *   sent=N failures=F seconds=S msgs_per_s=R p50_ms=A p99_ms=B max_ms=C
 *
 * Build: gcc -O2 -o v1_load v1_load.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct slot {
    int fd;
    uint64_t index;
    int64_t started_ns;
};

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* RFC 3339 as Go's time.Time marshals it: 9 fractional digits, trailing zeros trimmed. */
static int go_time(char *out, size_t cap, int64_t ns) {
    time_t secs = (time_t)(ns / 1000000000);
    long frac = (long)(ns % 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int n = (int)strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac) {
        char digits[16];
        snprintf(digits, sizeof digits, "%09ld", frac);
        int len = 9;
        while (len > 0 && digits[len - 1] == '0') len--;
        n += snprintf(out + n, cap - (size_t)n, ".%.*s", len, digits);
    }
    n += snprintf(out + n, cap - (size_t)n, "Z");
    return n;
}

static int announce(char *out, size_t cap, uint64_t i, uint64_t keys) {
    char when[64];
    go_time(when, sizeof when, now_ns(CLOCK_REALTIME));
    uint64_t k = i % keys;
    unsigned port = 6881 + (unsigned)((i >> 24) & 0x3fff);
    if (i & 1) /* half of them carry a peer id, as a BitTorrent client's announce does */
        return snprintf(out, cap,
                        "{\"type\":\"announce\",\"info_hash\":\"%040llx\",\"providers\":"
                        "[{\"addr\":\"10.%u.%u.%u:%u\",\"peer_id\":\"-qB4650-%012llu\","
                        "\"last_seen\":\"%s\"}]}\n",
                        (unsigned long long)k, (unsigned)((i >> 16) & 255),
                        (unsigned)((i >> 8) & 255), (unsigned)(i & 255), port,
                        (unsigned long long)(i % 1000000000000ULL), when);
    return snprintf(out, cap,
                    "{\"type\":\"announce\",\"info_hash\":\"%040llx\",\"providers\":"
                    "[{\"addr\":\"10.%u.%u.%u:%u\",\"last_seen\":\"%s\"}]}\n",
                    (unsigned long long)k, (unsigned)((i >> 16) & 255),
                    (unsigned)((i >> 8) & 255), (unsigned)(i & 255), port, when);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s -p PORT [-h 127.0.0.1] [-n 10000] [-c 32] [-t 30] [-g 5] [-k 1000] "
            "[-o 0] [-s 1]\n",
            argv0);
    exit(2);
}

struct gen {
    int ep, sources;
    struct sockaddr_in to;
    struct slot *slots;
    uint64_t next, total, offset, failures, in_flight;
    int64_t stop_starting;
};

/* Dial the next message on slot s (slot left idle, fd -1, when none is left to start). */
static void start_next(struct gen *g, int s) {
    g->slots[s].fd = -1;
    while (g->next < g->total && now_ns(CLOCK_MONOTONIC) < g->stop_starting) {
        g->slots[s].index = g->offset + g->next++;
        g->slots[s].started_ns = now_ns(CLOCK_MONOTONIC);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            g->failures++;
            continue;
        }
        if (g->sources > 1) { /* the port is picked at connect, per 4-tuple */
            int one = 1;
            struct sockaddr_in from = {.sin_family = AF_INET};
            from.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(g->next % (uint64_t)g->sources));
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            if (bind(fd, (struct sockaddr *)&from, sizeof from) < 0) {
                close(fd);
                g->failures++;
                continue;
            }
        }
        if (connect(fd, (struct sockaddr *)&g->to, sizeof g->to) < 0 && errno != EINPROGRESS) {
            close(fd);
            g->failures++;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)s};
        epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev);
        g->slots[s].fd = fd;
        g->in_flight++;
        return;
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, conc = 32, sources = 1;
    uint64_t total = 10000, keys = 1000, offset = 0;
    double limit_s = 30, grace_s = 5;
    int opt;
    while ((opt = getopt(argc, argv, "h:p:n:c:t:g:k:o:s:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': total = strtoull(optarg, NULL, 10); break;
        case 'c': conc = atoi(optarg); break;
        case 't': limit_s = atof(optarg); break;
        case 'g': grace_s = atof(optarg); break;
        case 'k': keys = strtoull(optarg, NULL, 10); break;
        case 'o': offset = strtoull(optarg, NULL, 10); break;
        case 's': sources = atoi(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (port <= 0 || port > 65535 || conc < 1 || total < 1 || keys < 1 || limit_s <= 0 ||
        sources < 1 || sources > 250)
        usage(argv[0]);
    if ((uint64_t)conc > total) conc = (int)total;

    struct gen g = {.total = total, .offset = offset, .sources = sources};
    g.to = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &g.to.sin_addr) != 1) {
        fprintf(stderr, "bad host %s (IPv4 only)\n", host);
        return 2;
    }
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.slots = calloc((size_t)conc, sizeof *g.slots);
    int64_t *lat = malloc(total * sizeof *lat);
    struct epoll_event *events = malloc((size_t)conc * sizeof *events);
    if (g.ep < 0 || !g.slots || !lat || !events) {
        perror("setup");
        return 1;
    }
    uint64_t done = 0;
    const int64_t t0 = now_ns(CLOCK_MONOTONIC);
    g.stop_starting = t0 + (int64_t)(limit_s * 1e9);
    const int64_t give_up = g.stop_starting + (int64_t)(grace_s * 1e9);
    char buf[512];

    for (int s = 0; s < conc; s++) start_next(&g, s);
    while (g.in_flight > 0) {
        int64_t now = now_ns(CLOCK_MONOTONIC);
        if (now >= give_up) break;
        int64_t wait_ms = (give_up - now) / 1000000 + 1;
        int n = epoll_wait(g.ep, events, conc, wait_ms > 100 ? 100 : (int)wait_ms);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int e = 0; e < n; e++) {
            int s = (int)events[e].data.u32;
            int fd = g.slots[s].fd;
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            int ok = 0;
            if (!err) {
                int m = announce(buf, sizeof buf, g.slots[s].index, keys);
                ok = write(fd, buf, (size_t)m) == m;
            }
            close(fd); /* graceful: FIN after the data, as Go's conn.Close */
            g.in_flight--;
            if (ok)
                lat[done++] = now_ns(CLOCK_MONOTONIC) - g.slots[s].started_ns;
            else
                g.failures++;
            start_next(&g, s);
        }
    }
    uint64_t failures = g.failures + g.in_flight; /* in flight: still dialing past the grace */
    const double secs = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    qsort(lat, done, sizeof *lat, cmp_i64);
    double p50 = done ? lat[done / 2] / 1e6 : 0, p99 = done ? lat[(done * 99) / 100] / 1e6 : 0;
    double mx = done ? lat[done - 1] / 1e6 : 0;
    printf("sent=%llu failures=%llu seconds=%.3f msgs_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
           "max_ms=%.1f\n",
           (unsigned long long)done, (unsigned long long)failures, secs, done / secs, p50, p99,
           mx);
    return 0;
}
