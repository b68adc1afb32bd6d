// The messages between a host's manager and its connection holder (pj-holder.c;
// net-layer/holder.ts mirrors them): one per seqpacket; a descriptor rides along
// with ADOPT and LISTEN, and with the answers to DUP and LISTENER. A listening
// socket a new manager does not claim (LISTEN or LISTENER) within PJ_HOLD_ORPHAN_MS
// of connecting is closed.
#pragma once
#include <stdint.h>

enum {
  // manager -> holder; each with a nonzero `req` is answered by an ANSWER with the same `req`
  PJ_HOLD_ADOPT = 1,     // a connected socket (descriptor) of `job`, to `target`: answered with its key
  PJ_HOLD_TICKET = 2,    // `token` opens one tunnel to `key` within 30 s; answered once no tunnel uses it
  PJ_HOLD_DUP = 3,       // a duplicate of `key`'s socket, in the answer, once no tunnel uses it
  PJ_HOLD_PAUSE = 4,     // stop reading `key`'s outside, flush and half-close its tunnel; answered once the init closed it
  PJ_HOLD_CLOSE = 5,     // the job is done with `key` (flags: PJ_HOLD_RESET)
  PJ_HOLD_ORPHAN = 6,    // `key` is closed unless a job claims it (TICKET, DUP, PAUSE) within PJ_HOLD_ORPHAN_MS
  PJ_HOLD_STATS = 7,     // answered with key = connections held, flags = tunnels among them
  PJ_HOLD_SHUTDOWN = 8,  // close every connection and exit
  PJ_HOLD_LISTEN = 9,    // keep this listening socket (descriptor) of published `port` of `job`, so that
                         // connections queue in its backlog while no manager accepts them
  PJ_HOLD_LISTENER = 10, // a duplicate of the listening socket kept for `port`, in the answer (ENOENT: none)
  PJ_HOLD_UNLISTEN = 11, // `port` is not published here any more: its listening socket is closed
  // holder -> manager
  PJ_HOLD_HELLO = 20,   // first on every manager connection: `port` is the tunnel listener's
  PJ_HOLD_ANSWER = 21,  // to request `req`: err 0 or an errno
};

#define PJ_HOLD_RESET 1  // CLOSE: end the connection with a reset (the job's end was reset)
#define PJ_HOLD_TOKEN 16
#define PJ_HOLD_ORPHAN_MS 60000

struct pj_hold_msg {
  uint32_t type;
  uint32_t req;
  int32_t err;
  uint32_t flags;
  uint64_t key;
  uint16_t port;
  uint16_t pad[3];
  uint8_t token[PJ_HOLD_TOKEN];
  char job[32];
  char target[96];
};

// net-layer/holder.ts reads and writes these offsets.
_Static_assert(sizeof(struct pj_hold_msg) == 176, "pj_hold_msg is 176 bytes");
_Static_assert(__builtin_offsetof(struct pj_hold_msg, key) == 16 && __builtin_offsetof(struct pj_hold_msg, port) == 24, "key at 16, port at 24");
_Static_assert(__builtin_offsetof(struct pj_hold_msg, token) == 32 && __builtin_offsetof(struct pj_hold_msg, job) == 48, "token at 32, job at 48");
_Static_assert(__builtin_offsetof(struct pj_hold_msg, target) == 80, "target at 80");
