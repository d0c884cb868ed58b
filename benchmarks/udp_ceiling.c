/* The ceiling row of benchmarks/dns.py: a UDP "server" that does no DNS work at all.
 *
 * It receives a query with one recvfrom(), sets QR and sends the same bytes back with
 * one sendto(): the per-packet system calls every server in the benchmark makes, and
 * nothing else. Its queries/s is the most this machine and this dnsperf setting can
 * show for a single-threaded server that answers packet by packet.
 *
 * Usage: udp_ceiling PORT   (listens on 127.0.0.1:PORT until killed)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp_ceiling PORT\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("udp_ceiling");
        return 1;
    }
    unsigned char buffer[4096];
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
