// The messages between a job's init and its host's manager (net-layer/init-channel.ts
// mirrors them): one per seqpacket, this header then a payload; descriptors ride along.
#pragma once
#include <stdint.h>

#define PJ_RELAY_PORT 7777   // inside the job: every outbound TCP connection arrives here (tproxy)
#define PJ_DNS_PORT 7753     // inside the job: DNS queries (UDP 53, redirected)
#define PJ_SIG_REATTACH 38   // SIGRTMIN + 4: "talk to this host's manager again"

enum {
  // init -> manager
  PJ_MSG_OPEN = 1,      // a new connection to addr:port
  PJ_MSG_ATTACH = 2,    // a connection made before a detach: key at holder
  PJ_MSG_DNS = 3,       // a DNS query from addr:port (payload)
  PJ_MSG_DETACHED = 4,  // every link is closed; the channel closes next (err ETIMEDOUT: `stream` tunnels did not end, and stay: no move)
  PJ_MSG_CLOSED = 5,    // a connection ended (err: 0, or the errno that ended it)
  PJ_MSG_BYTES = 6,     // running totals of a connection
  PJ_MSG_HELLO = 8,     // first on every channel: the manager knows the job's init from then on
  PJ_MSG_ACCEPTED = 7,  // an INBOUND connection is this stream now (or err: the job's port refused it)
  // manager -> init
  PJ_MSG_OPENED = 11,     // the link for a connection (descriptor), or err
  PJ_MSG_DNS_REPLY = 12,  // the answer for addr:port (payload)
  PJ_MSG_DETACH = 13,     // close every link (tunnels are drained first)
  PJ_MSG_INBOUND = 14,    // a connection for the job's port `port` (descriptor): connect it inside
};

// flags
#define PJ_LINK_TUNNEL 1  // the link is a framed tunnel to the holder, not the outside socket itself

struct pj_net_msg {
  uint32_t type;
  uint32_t stream;
  int32_t err;
  uint32_t flags;
  uint32_t addr;  // IPv4, network byte order
  uint16_t port;  // host byte order
  uint16_t pad;
  uint64_t key;        // the holder's name for the connection
  uint64_t bytes_out;  // job -> outside, in total
  uint64_t bytes_in;   // outside -> job, in total
  char holder[64];     // the host that holds the outside end
};

// net-layer/messages.ts reads and writes these offsets (test/net/net-msg.test.ts checks both ways).
_Static_assert(sizeof(struct pj_net_msg) == 112, "pj_net_msg is 112 bytes");
_Static_assert(__builtin_offsetof(struct pj_net_msg, addr) == 16 && __builtin_offsetof(struct pj_net_msg, port) == 20, "addr at 16, port at 20");
_Static_assert(__builtin_offsetof(struct pj_net_msg, key) == 24 && __builtin_offsetof(struct pj_net_msg, bytes_out) == 32, "key at 24, bytes_out at 32");
_Static_assert(__builtin_offsetof(struct pj_net_msg, bytes_in) == 40 && __builtin_offsetof(struct pj_net_msg, holder) == 48, "bytes_in at 40, holder at 48");
