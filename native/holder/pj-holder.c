// pj-holder: a host's outside ends of jobs' connections, kept apart from its
// manager so that they outlive it. The manager hands each connected socket over
// (ADOPT) and steers it over a unix seqpacket socket (hold-msg.h); a job on this
// host gets a duplicate (DUP) and relays it itself, a job elsewhere comes through
// a framed tunnel (tunnel-frame.h) that this process relays. When the manager
// dies, tunnels go on carrying bytes and the next manager takes over the holder.
//
//   pj-holder SOCKET ADDRESS
//
// SOCKET: where the manager finds it; ADDRESS: the host's mesh address, on which
// it listens for tunnels (any port: HELLO says which). It logs to stderr.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "../common/byte-buf.h"
#include "../common/fd-message.h"
#include "../common/tunnel-frame.h"
#include "hold-msg.h"

#define BUF_CAP (256 * 1024)
#define READ_CHUNK 65536
#define TICKET_MS 30000
#define TOKEN_WAIT_MS 5000
#define FLUSH_MS 10000
// Alone (no manager, no connection) this long, the holder ends.
#define ALONE_MS 60000

struct tunnel {
  int fd;
  int paused;     // PAUSE: the outside is not read any more; half-closed once `down` is written
  int shut;       // half-closed by us
  int ended;      // the init closed its end: only `up` is left to write
  int64_t ended_at;
  struct buf down;  // framed, outside -> tunnel
  struct buf up;    // unframed, tunnel -> outside
  int up_eof;       // the job's EOF came in a frame: the outside is half-closed once `up` is written
  char rhdr[PJ_FRAME_HEADER];
  int rhdr_got;
  uint32_t rframe_left;
  uint32_t watching;  // events registered for fd
};

struct waiter { struct waiter* next; uint32_t type, req; uint8_t token[PJ_HOLD_TOKEN]; };

struct conn {
  struct conn* next;
  uint64_t key;
  int fd;
  char job[32], target[96];
  int outside_eof;   // the outside sent EOF: a later tunnel is told at once
  int outside_shut;  // we half-closed the outside
  int outside_failed;
  int closing, reset;  // CLOSE asked: freed once its tunnel is done
  int64_t orphan_at;   // 0: none
  uint32_t watching;   // events registered for fd
  struct tunnel* t;
  struct waiter* waiters;  // TICKET, DUP, PAUSE: answered once no tunnel uses the connection
  int dead;
};

// A published port's listening socket: never accepted here, only kept open.
struct listener { struct listener* next; uint16_t port; int fd; char job[32]; int64_t unclaimed_until; /* 0: claimed */ };

struct pending { struct pending* next; int fd; uint8_t token[PJ_HOLD_TOKEN]; int got; int64_t deadline; int dead; };
struct ticket { struct ticket* next; uint8_t token[PJ_HOLD_TOKEN]; uint64_t key; int64_t expires; };

static int ep, agents_listener, tunnel_listener, agent = -1;
static struct conn* conns;
static struct listener* listeners;
static struct pending* pendings;
static struct ticket* tickets;
static uint64_t next_key;
static int64_t alone_since;

enum { TAG_AGENTS = 1, TAG_TUNNELS = 2, TAG_AGENT = 3 };
// Object tags: the pointer, low bits saying which: 0 a connection's outside, 1 its tunnel, 2 a tunnel not yet told its token.
#define TAG_KIND(t) ((t) & 3)
#define TAG_PTR(t) ((void*)(uintptr_t)((t) & ~(uint64_t)3))

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char* fmt, ...) {
  char when[32];
  time_t t = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
  va_list a;
  va_start(a, fmt);
  fprintf(stderr, "%s pj-holder: ", when);
  vfprintf(stderr, fmt, a);
  fputc('\n', stderr);
  va_end(a);
}

// Registers exactly `events` for fd (none: not registered at all, so that a hang-up cannot wake us for ever).
static void want(int fd, uint64_t tag, uint32_t events, uint32_t* watching) {
  if (events == *watching) return;
  struct epoll_event e = {.events = events, .data.u64 = tag};
  if (events == 0) epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  else epoll_ctl(ep, *watching ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &e);
  *watching = events;
}

// ---- the manager's connection

static void answer(uint32_t req, int err, uint64_t key, uint32_t flags, int fd) {
  if (agent < 0 || req == 0) return;
  struct pj_hold_msg m = {.type = PJ_HOLD_ANSWER, .req = req, .err = err, .key = key, .flags = flags};
  // blocking with a send timeout (see on_agent_connect): the manager reads at once
  if (pj_send_fd(agent, &m, sizeof m, fd, 0) < 0) say("an answer to the manager was lost: %s", strerror(errno));
}

// ---- connections

static struct conn* find(uint64_t key) {
  for (struct conn* c = conns; c; c = c->next)
    if (c->key == key && !c->dead) return c;
  return NULL;
}

static void free_tunnel(struct conn* c) {
  struct tunnel* t = c->t;
  if (!t) return;
  if (t->fd >= 0) {
    want(t->fd, 0, 0, &t->watching);
    close(t->fd);
  }
  free(t->down.data);
  free(t->up.data);
  free(t);
  c->t = NULL;
}

static void answer_waiters(struct conn* c);

static void conn_free(struct conn* c) {
  free_tunnel(c);
  want(c->fd, 0, 0, &c->watching);
  if (c->reset) {
    struct linger l = {1, 0};  // RST, as the job's end was
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close(c->fd);
  c->dead = 1;
  answer_waiters(c);  // ENOENT to each
}

// The tunnel is done (the init closed it, or it failed): what waited for it goes on.
static void tunnel_done(struct conn* c) {
  int paused = c->t->paused;
  free_tunnel(c);
  want(c->fd, 0, 0, &c->watching);  // a job on this host may read it directly next
  if (c->closing) return conn_free(c);
  if (!paused && c->orphan_at == 0) {  // the job's host went away mid-stream: it may come back for it
    say("tunnel of connection %llu (job %s, %s) ended without a pause: kept %d s for its job", (unsigned long long)c->key, c->job, c->target, PJ_HOLD_ORPHAN_MS / 1000);
    c->orphan_at = now_ms() + PJ_HOLD_ORPHAN_MS;
  }
  answer_waiters(c);
}

static void rearm(struct conn* c) {
  struct tunnel* t = c->t;
  if (!t) return;
  uint32_t out = 0, tun = 0;
  if (!c->outside_failed) {
    if (!t->paused && !t->ended && !c->outside_eof && t->down.len < BUF_CAP) out |= EPOLLIN;
    if (t->up.len > 0) out |= EPOLLOUT;
  }
  if (!t->ended) {
    if (t->up.len < BUF_CAP) tun |= EPOLLIN;
    if (t->down.len > 0) tun |= EPOLLOUT;
  }
  want(c->fd, (uint64_t)(uintptr_t)c, out, &c->watching);
  want(t->fd, (uint64_t)(uintptr_t)c | 1, tun, &t->watching);
}

static void deframe(struct tunnel* t, const char* p, size_t n) {
  for (size_t i = 0; i < n;) {
    if (t->rframe_left == 0) {
      t->rhdr[t->rhdr_got++] = p[i++];
      if (t->rhdr_got < PJ_FRAME_HEADER) continue;
      t->rhdr_got = 0;
      t->rframe_left = pj_frame_length(t->rhdr);
      if (t->rframe_left == 0) t->up_eof = 1;
      continue;
    }
    size_t take = n - i < t->rframe_left ? n - i : t->rframe_left;
    if (buf_reserve(&t->up, take) == 0) {
      memcpy(t->up.data + t->up.len, p + i, take);
      t->up.len += take;
    }
    t->rframe_left -= take;
    i += take;
  }
}

// Moves what can move, both ways, then decides what to wait for.
static void pump(struct conn* c) {
  struct tunnel* t = c->t;
  // outside -> tunnel, framed
  while (!c->outside_failed && !t->paused && !t->ended && !c->outside_eof && t->down.len < BUF_CAP) {
    if (buf_reserve(&t->down, PJ_FRAME_HEADER + READ_CHUNK)) break;
    ssize_t n = read(c->fd, t->down.data + t->down.len + PJ_FRAME_HEADER, READ_CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n < 0) { c->outside_failed = 1; break; }
    pj_frame_header(t->down.data + t->down.len, (uint32_t)n);  // 0: the outside's EOF, in band
    t->down.len += PJ_FRAME_HEADER + n;
    if (n == 0) c->outside_eof = 1;
  }
  if (c->outside_failed) return tunnel_done(c);  // the outside broke: so does the tunnel, which the job's init sees as a reset
  while (!t->ended && t->down.len > 0) {
    ssize_t n = send(t->fd, t->down.data, t->down.len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n < 0) { t->ended = 1; t->ended_at = now_ms(); break; }
    buf_consume(&t->down, n);
  }
  if (t->paused && !t->shut && !t->ended && t->down.len == 0) {
    shutdown(t->fd, SHUT_WR);
    t->shut = 1;
  }
  // tunnel -> outside
  char tmp[READ_CHUNK];
  while (!t->ended && t->up.len < BUF_CAP) {
    ssize_t n = read(t->fd, tmp, sizeof tmp);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n <= 0) { t->ended = 1; t->ended_at = now_ms(); break; }  // the init closed it (it never half-closes one)
    deframe(t, tmp, n);
  }
  while (t->up.len > 0) {
    ssize_t n = send(c->fd, t->up.data, t->up.len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n < 0) { c->outside_failed = 1; break; }
    buf_consume(&t->up, n);
  }
  if (c->outside_failed) return tunnel_done(c);  // the job's init sees its tunnel close without an EOF: a reset
  if (t->up_eof && t->up.len == 0 && !c->outside_shut) {
    shutdown(c->fd, SHUT_WR);
    c->outside_shut = 1;
  }
  if (t->ended) {
    if (t->fd >= 0) { want(t->fd, 0, 0, &t->watching); close(t->fd); t->fd = -1; }
    if (t->up.len == 0 || c->outside_failed) return tunnel_done(c);
  }
  rearm(c);
}

static void conn_close(struct conn* c, int reset) {
  c->reset = reset;
  if (!c->t) return conn_free(c);
  c->closing = 1;
  c->t->ended = 1;  // its tunnel goes now; what it brought is still written out
  c->t->ended_at = now_ms();
  pump(c);
}

static void answer_waiters(struct conn* c) {
  if (c->waiters && !c->dead) c->orphan_at = 0;  // claimed
  while (c->waiters) {
    struct waiter* w = c->waiters;
    c->waiters = w->next;
    if (c->dead) answer(w->req, ENOENT, c->key, 0, -1);
    else if (w->type == PJ_HOLD_TICKET) {
      struct ticket* k = calloc(1, sizeof *k);
      if (!k) answer(w->req, ENOMEM, c->key, 0, -1);
      else {
        memcpy(k->token, w->token, PJ_HOLD_TOKEN);
        k->key = c->key;
        k->expires = now_ms() + TICKET_MS;
        k->next = tickets;
        tickets = k;
        answer(w->req, 0, c->key, 0, -1);
      }
    } else if (w->type == PJ_HOLD_DUP) {
      int d = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
      answer(w->req, d < 0 ? errno : 0, c->key, 0, d);
      if (d >= 0) close(d);
    } else {
      answer(w->req, 0, c->key, 0, -1);  // PAUSE: no tunnel (any more)
    }
    free(w);
  }
}

// ---- published ports' listening sockets

static struct listener** listener_at(uint16_t port) {
  struct listener** l = &listeners;
  while (*l && (*l)->port != port) l = &(*l)->next;
  return l;
}

static void listener_close(struct listener** at, const char* why) {
  struct listener* l = *at;
  say("closing the listening socket of port %u (job %s): %s", l->port, l->job, why);
  close(l->fd);
  *at = l->next;
  free(l);
}

static void on_listen_request(struct pj_hold_msg* m, int fd) {
  struct listener** at = listener_at(m->port);
  if (m->type == PJ_HOLD_LISTEN) {
    if (fd < 0) return answer(m->req, EBADF, 0, 0, -1);
    if (*at) { close((*at)->fd); (*at)->fd = fd; }
    else {
      struct listener* l = calloc(1, sizeof *l);
      if (!l) { close(fd); return answer(m->req, ENOMEM, 0, 0, -1); }
      l->port = m->port;
      l->fd = fd;
      *at = l;  // at the list's end
    }
    memcpy((*at)->job, m->job, sizeof (*at)->job - 1);
    (*at)->unclaimed_until = 0;
    return answer(m->req, 0, 0, 0, -1);
  }
  if (fd >= 0) close(fd);
  if (!*at) return answer(m->req, ENOENT, 0, 0, -1);
  if (m->type == PJ_HOLD_UNLISTEN) {
    listener_close(at, "no longer published here");
    return answer(m->req, 0, 0, 0, -1);
  }
  (*at)->unclaimed_until = 0;
  int d = fcntl((*at)->fd, F_DUPFD_CLOEXEC, 3);
  answer(m->req, d < 0 ? errno : 0, 0, 0, d);
  if (d >= 0) close(d);
}

// ---- requests

static void on_request(struct pj_hold_msg* m, int fd) {
  if (m->type == PJ_HOLD_ADOPT) {
    struct conn* c = fd >= 0 ? calloc(1, sizeof *c) : NULL;
    if (!c) { if (fd >= 0) close(fd); return answer(m->req, fd < 0 ? EBADF : ENOMEM, 0, 0, -1); }
    c->key = next_key++;
    c->fd = fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    memcpy(c->job, m->job, sizeof c->job - 1);
    memcpy(c->target, m->target, sizeof c->target - 1);
    c->next = conns;
    conns = c;
    return answer(m->req, 0, c->key, 0, -1);
  }
  if (m->type == PJ_HOLD_LISTEN || m->type == PJ_HOLD_LISTENER || m->type == PJ_HOLD_UNLISTEN) return on_listen_request(m, fd);
  if (fd >= 0) close(fd);
  if (m->type == PJ_HOLD_STATS) {
    uint64_t n = 0;
    uint32_t tunnels = 0;
    for (struct conn* c = conns; c; c = c->next) if (!c->dead) { n++; if (c->t) tunnels++; }
    return answer(m->req, 0, n, tunnels, -1);
  }
  struct conn* c = find(m->key);
  if (!c) return answer(m->req, ENOENT, m->key, 0, -1);
  switch (m->type) {
    case PJ_HOLD_CLOSE:
      conn_close(c, m->flags & PJ_HOLD_RESET);
      return answer(m->req, 0, m->key, 0, -1);
    case PJ_HOLD_ORPHAN:
      c->orphan_at = now_ms() + PJ_HOLD_ORPHAN_MS;
      return answer(m->req, 0, m->key, 0, -1);
    case PJ_HOLD_TICKET:
    case PJ_HOLD_DUP:
    case PJ_HOLD_PAUSE: {
      c->orphan_at = 0;  // claimed
      struct waiter* w = calloc(1, sizeof *w);
      if (!w) return answer(m->req, ENOMEM, m->key, 0, -1);
      w->type = m->type;
      w->req = m->req;
      memcpy(w->token, m->token, PJ_HOLD_TOKEN);
      w->next = c->waiters;
      c->waiters = w;
      if (!c->t) return answer_waiters(c);
      if (m->type == PJ_HOLD_PAUSE && !c->t->paused) {
        c->t->paused = 1;
        pump(c);
      }
      return;
    }
    default:
      return answer(m->req, EINVAL, m->key, 0, -1);
  }
}

static void shutdown_all(void) {
  for (struct conn* c = conns; c; c = c->next) if (!c->dead) { free_tunnel(c); conn_free(c); }
  while (listeners) listener_close(&listeners, "the manager asked the holder to end");
  say("the manager asked it to end: every connection closed");
  exit(0);
}

static void on_agent_connect(void) {
  int fd = accept4(agents_listener, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  if (agent >= 0) {
    say("a new manager connected: the last one's channel is closed");
    epoll_ctl(ep, EPOLL_CTL_DEL, agent, NULL);
    close(agent);
  }
  agent = fd;
  // The listening sockets it still wants, it claims; the others are of jobs that ended meanwhile.
  for (struct listener* l = listeners; l; l = l->next) l->unclaimed_until = now_ms() + PJ_HOLD_ORPHAN_MS;
  struct timeval tv = {2, 0};
  setsockopt(agent, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = TAG_AGENT};
  epoll_ctl(ep, EPOLL_CTL_ADD, agent, &e);
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  getsockname(tunnel_listener, (struct sockaddr*)&a, &len);
  struct pj_hold_msg hello = {.type = PJ_HOLD_HELLO, .port = ntohs(a.sin_port)};
  if (send(agent, &hello, sizeof hello, MSG_NOSIGNAL) < 0) say("hello to the manager failed: %s", strerror(errno));
}

static void on_agent(void) {
  for (;;) {
    struct pj_hold_msg m;
    int fd;
    ssize_t n = pj_recv_fd(agent, &m, sizeof m, &fd, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      say("the manager went away: its connections are kept for the next one");
      epoll_ctl(ep, EPOLL_CTL_DEL, agent, NULL);
      close(agent);
      agent = -1;
      return;
    }
    if ((size_t)n != sizeof m) {
      say("malformed message from the manager (%zd bytes) dropped", n);
      if (fd >= 0) close(fd);
      continue;
    }
    m.job[sizeof m.job - 1] = 0;
    m.target[sizeof m.target - 1] = 0;
    if (m.type == PJ_HOLD_SHUTDOWN) shutdown_all();
    on_request(&m, fd);
    if (agent < 0) return;
  }
}

// ---- tunnels coming in

static void on_tunnel_connect(void) {
  for (;;) {
    int fd = accept4(tunnel_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    struct pending* p = calloc(1, sizeof *p);
    if (!p) { close(fd); continue; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    p->fd = fd;
    p->deadline = now_ms() + TOKEN_WAIT_MS;
    p->next = pendings;
    pendings = p;
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = (uint64_t)(uintptr_t)p | 2};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
  }
}

static void pending_drop(struct pending* p) {
  if (p->fd >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    p->fd = -1;
  }
  p->dead = 1;
}

// A tunnel says its token first (read exactly that: what follows is the job's frames).
static void on_pending(struct pending* p) {
  ssize_t n = recv(p->fd, p->token + p->got, PJ_HOLD_TOKEN - p->got, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) return pending_drop(p);
  p->got += n;
  if (p->got < PJ_HOLD_TOKEN) return;
  struct ticket** k = &tickets;
  while (*k && memcmp((*k)->token, p->token, PJ_HOLD_TOKEN) != 0) k = &(*k)->next;
  struct ticket* found = *k;
  if (found) *k = found->next;
  struct conn* c = found ? find(found->key) : NULL;
  free(found);
  if (!c || c->t || c->closing) return pending_drop(p);
  struct tunnel* t = calloc(1, sizeof *t);
  if (!t) return pending_drop(p);
  epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
  t->fd = p->fd;
  p->fd = -1;
  pending_drop(p);
  c->t = t;
  c->orphan_at = 0;
  if (c->outside_eof && buf_reserve(&t->down, PJ_FRAME_HEADER) == 0) {  // the outside ended before: say so at once
    pj_frame_header(t->down.data, 0);
    t->down.len = PJ_FRAME_HEADER;
  }
  pump(c);
}

// ---- time

static void sweep(void) {
  int64_t now = now_ms();
  for (struct ticket** k = &tickets; *k;) {
    if ((*k)->expires > now) { k = &(*k)->next; continue; }
    struct ticket* gone = *k;
    *k = gone->next;
    free(gone);
  }
  for (struct pending* p = pendings; p; p = p->next) if (!p->dead && p->deadline <= now) pending_drop(p);
  int held = 0;
  for (struct conn* c = conns; c; c = c->next) {
    if (c->dead) continue;
    if (c->t && c->t->ended && now - c->t->ended_at > FLUSH_MS) { c->outside_failed = 1; pump(c); }  // an outside that takes nothing
    else if (!c->t && c->orphan_at && c->orphan_at <= now) {
      say("closing connection %llu (job %s, %s): its job left it", (unsigned long long)c->key, c->job, c->target);
      conn_free(c);
    }
    if (!c->dead) held++;
  }
  for (struct listener** l = &listeners; *l;) {
    if ((*l)->unclaimed_until && (*l)->unclaimed_until <= now) listener_close(l, "the manager did not claim it");
    else { held++; l = &(*l)->next; }
  }
  if (agent >= 0 || held) alone_since = 0;
  else if (!alone_since) alone_since = now;
  else if (now - alone_since > ALONE_MS) {
    say("no manager and no connection for %d s: ending", ALONE_MS / 1000);
    exit(0);
  }
}

// Frees what this round marked dead (nothing may point at it once the round is over).
static void bury(void) {
  for (struct conn** c = &conns; *c;) {
    if (!(*c)->dead) { c = &(*c)->next; continue; }
    struct conn* gone = *c;
    *c = gone->next;
    free(gone);
  }
  for (struct pending** p = &pendings; *p;) {
    if (!(*p)->dead) { p = &(*p)->next; continue; }
    struct pending* gone = *p;
    *p = gone->next;
    free(gone);
  }
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: pj-holder SOCKET ADDRESS\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  next_key = ((uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) << 16;  // never a key an earlier holder gave
  ep = epoll_create1(EPOLL_CLOEXEC);

  struct sockaddr_in a = {.sin_family = AF_INET};
  if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) { say("not an IPv4 address: %s", argv[2]); return 2; }
  tunnel_listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (tunnel_listener < 0 || bind(tunnel_listener, (struct sockaddr*)&a, sizeof a) != 0 || listen(tunnel_listener, 512) != 0) {
    say("cannot listen for tunnels on %s: %s", argv[2], strerror(errno));
    return 1;
  }
  struct sockaddr_un u = {.sun_family = AF_UNIX};
  if (strlen(argv[1]) >= sizeof u.sun_path) { say("socket path too long: %s", argv[1]); return 2; }
  strcpy(u.sun_path, argv[1]);
  agents_listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  unlink(argv[1]);
  if (agents_listener < 0 || bind(agents_listener, (struct sockaddr*)&u, sizeof u) != 0 || listen(agents_listener, 8) != 0) {
    say("cannot listen on %s: %s", argv[1], strerror(errno));
    return 1;
  }
  chmod(argv[1], 0600);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = TAG_AGENTS};
  epoll_ctl(ep, EPOLL_CTL_ADD, agents_listener, &e);
  e.data.u64 = TAG_TUNNELS;
  epoll_ctl(ep, EPOLL_CTL_ADD, tunnel_listener, &e);
  say("holding connections for the manager at %s, tunnels on %s (pid %d)", argv[1], argv[2], getpid());

  int64_t last_sweep = now_ms();
  for (;;) {
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, 250);
    if (n < 0 && errno != EINTR) { say("epoll_wait: %s", strerror(errno)); return 1; }
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      if (tag == TAG_AGENTS) on_agent_connect();
      else if (tag == TAG_TUNNELS) on_tunnel_connect();
      else if (tag == TAG_AGENT) { if (agent >= 0) on_agent(); }
      else if (TAG_KIND(tag) == 2) { struct pending* p = TAG_PTR(tag); if (!p->dead) on_pending(p); }
      else { struct conn* c = TAG_PTR(tag); if (!c->dead && c->t) pump(c); }
    }
    if (now_ms() - last_sweep >= 250) { sweep(); last_sweep = now_ms(); }
    bury();
  }
}
