// For net-msg.test.ts: reads one pj_net_msg (net-msg.h) from stdin and prints
// its fields as the C side sees them, then writes a message of its own made
// from those fields plus one, and the message types, as the relay sends them.
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "../../native/init/net-msg.h"

int main(void) {
  struct pj_net_msg m;
  if (read(0, &m, sizeof m) != sizeof m) return 1;
  struct in_addr a = {m.addr};
  fprintf(stderr, "{\"type\":%u,\"stream\":%u,\"err\":%d,\"flags\":%u,\"addr\":\"%s\",\"port\":%u,\"key\":\"%llu\",\"bytesOut\":\"%llu\",\"bytesIn\":\"%llu\",\"holder\":\"%s\","
          "\"types\":[%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d],\"tunnel\":%d,\"ports\":[%d,%d,%d]}\n",
          m.type, m.stream, m.err, m.flags, inet_ntoa(a), m.port, (unsigned long long)m.key, (unsigned long long)m.bytes_out,
          (unsigned long long)m.bytes_in, m.holder, PJ_MSG_OPEN, PJ_MSG_ATTACH, PJ_MSG_DNS, PJ_MSG_DETACHED, PJ_MSG_CLOSED, PJ_MSG_BYTES,
          PJ_MSG_ACCEPTED, PJ_MSG_HELLO, PJ_MSG_OPENED, PJ_MSG_DNS_REPLY, PJ_MSG_DETACH, PJ_MSG_INBOUND, PJ_LINK_TUNNEL, PJ_RELAY_PORT,
          PJ_DNS_PORT, PJ_SIG_REATTACH);
  m.type++; m.stream++; m.err--; m.flags++; m.addr = htonl(ntohl(m.addr) + 1); m.port++; m.key++; m.bytes_out++; m.bytes_in++;
  strcat(m.holder, "+");
  return write(1, &m, sizeof m) == sizeof m ? 0 : 1;
}
