/* The ceiling rows of benchmarks/dns.py: a UDP "server" that does no DNS work at all.
 *
 * It receives queries, sets QR and sends the same bytes back. Packet by packet (one
 * recvfrom() and one sendto() per query: the system calls dnsmasq and unbound make),
 * its queries/s is the most this machine and this dnsperf setting can show for a
 * server that answers packet by packet. Batched (one recvmmsg() for up to 64 waiting
 * queries and one sendmmsg() for their replies, as the agent does on Linux), it is
 * the most dnsperf itself can drive here: what is left is dnsperf's own cost and the
 * kernel's work per datagram.
 *
 * Usage: udp_ceiling PORT [batch]   (listens on 127.0.0.1:PORT until killed)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64
#define SLOT 4096

static void packet_by_packet(int fd) {
    unsigned char buffer[SLOT];
    for (;;) {
        struct sockaddr_in peer;
        socklen_t peer_len = sizeof peer;
        ssize_t size = recvfrom(fd, buffer, sizeof buffer, 0, (struct sockaddr *)&peer, &peer_len);
        if (size < 12) {
            continue;
        }
        buffer[2] |= 0x80;
        sendto(fd, buffer, (size_t)size, 0, (struct sockaddr *)&peer, peer_len);
    }
}

static void batched(int fd) {
    static unsigned char buffers[BATCH][SLOT];
    static struct sockaddr_in peers[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr messages[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = buffers[i], .iov_len = SLOT};
            memset(&messages[i], 0, sizeof messages[i]);
            messages[i].msg_hdr.msg_name = &peers[i];
            messages[i].msg_hdr.msg_namelen = sizeof peers[i];
            messages[i].msg_hdr.msg_iov = &iov[i];
            messages[i].msg_hdr.msg_iovlen = 1;
        }
        int count = recvmmsg(fd, messages, BATCH, MSG_WAITFORONE, NULL);
        if (count <= 0) {
            continue;
        }
        for (int i = 0; i < count; i++) {
            iov[i].iov_len = messages[i].msg_len;
            buffers[i][2] |= 0x80;
        }
        sendmmsg(fd, messages, (unsigned int)count, 0);
    }
}

int main(int argc, char **argv) {
    if (argc != 2 && !(argc == 3 && strcmp(argv[2], "batch") == 0)) {
        fprintf(stderr, "usage: udp_ceiling PORT [batch]\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("udp_ceiling");
        return 1;
    }
    if (argc == 3) {
        batched(fd);
    } else {
        packet_by_packet(fd);
    }
}
