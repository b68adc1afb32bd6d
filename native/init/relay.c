// The job's end of the net-layer, inside pj-init's first process (so it is
// checkpointed and moved with the job): every outbound TCP connection of the
// job arrives on 127.0.0.1:7777 (tproxy keeps its original destination as the
// local address); the manager answers each with a link, either the outside
// socket itself or a framed tunnel to the host holding it, and this loop copies
// bytes between the two. Before a dump the manager says DETACH: links are closed
// (a tunnel drained first), so that CRIU sees only loopback connections, and
// unsent bytes wait in this process's memory; PJ_SIG_REATTACH after the restore
// (or after a failed move) makes it ask the manager of the host it is on now
// for links again. DNS queries are passed to the manager as messages.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "net-msg.h"
#include "relay.h"
#include "../common/byte-buf.h"
#include "../common/tunnel-frame.h"

#define BUF_CAP (256 * 1024)
// How long a detach waits for the holders to end its tunnels (all of them). A busy holder (the destination of the move,
// taking its pre-copied pages in) can take seconds; past this the move is given up and the job keeps its tunnels.
#define DRAIN_MS 20000
#define PIPE_CAP (1024 * 1024)

enum state { WAIT_LINK, ACTIVE, DETACHED_STREAM, PENDING };

struct stream {
  struct stream* next;
  uint32_t id;
  enum state state;
  int job, link;
  int tunnel;
  struct pj_net_msg origin;  // addr, port, key, holder
  struct buf out, in;        // job -> link, link -> job
  // tunnel framing: the frame being written, the frame being read
  char hdr[PJ_FRAME_HEADER]; int hdr_left; uint32_t frame_left;
  char rhdr[PJ_FRAME_HEADER]; int rhdr_got; uint32_t rframe_left;
  int job_eof, job_shut;    // the job sent EOF / we sent it on
  int link_eof, link_shut;  // the outside sent EOF / we gave it to the job
  uint64_t bytes_out, bytes_in, reported_out, reported_in;
  // A direct link is fed by splice through two pipes (no copy here): bytes under way, per direction.
  int pout[2], pin[2];
  size_t pout_len, pin_len;
};

static int ep = -1, listener = -1, dns = -1, sigfd = -1, ctl = -1;
static const char* sock_path;
static int detached;  // between DETACH and PJ_SIG_REATTACH
static struct stream* streams;
static uint32_t next_id = 1;

static void ask_link(struct stream* s);
static void rearm(struct stream* s);

// epoll tags: small integers for the fixed descriptors, stream pointers otherwise (low bit: link side)
enum { TAG_LISTENER = 1, TAG_DNS = 2, TAG_SIG = 3, TAG_CTL = 4 };

static void watch(int fd, uint64_t tag, uint32_t events, int op) {
  struct epoll_event e = {.events = events, .data.u64 = tag};
  epoll_ctl(ep, op, fd, &e);
}
static uint64_t tag_of(struct stream* s, int link) { return (uint64_t)(uintptr_t)s | (uint64_t)link; }

static int send_msg(struct pj_net_msg* m, const void* payload, size_t len) {
  if (ctl < 0) return -1;
  struct iovec iov[2] = {{m, sizeof *m}, {(void*)payload, len}};
  struct msghdr h = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
  return sendmsg(ctl, &h, MSG_NOSIGNAL) < 0 ? -1 : 0;  // blocking: messages are small, the manager reads them at once
}

static void ctl_close(void) {
  if (ctl < 0) return;
  epoll_ctl(ep, EPOLL_CTL_DEL, ctl, NULL);
  close(ctl);
  ctl = -1;
}

static int ctl_open(void) {
  if (ctl >= 0) return 0;
  if (detached) return -1;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
  if (fd < 0 || connect(fd, (struct sockaddr*)&a, sizeof a) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  ctl = fd;
  watch(ctl, TAG_CTL, EPOLLIN, EPOLL_CTL_ADD);
  struct pj_net_msg hello = {.type = PJ_MSG_HELLO};
  return send_msg(&hello, NULL, 0);
}

// Ends a job connection with a reset, as a refused connection would.
static void reset_close(int fd) {
  struct linger l = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

static void close_pipes(struct stream* s) {
  for (int i = 0; i < 2; i++) {
    if (s->pout[i] >= 0) close(s->pout[i]);
    if (s->pin[i] >= 0) close(s->pin[i]);
    s->pout[i] = s->pin[i] = -1;
  }
}

// What is under way in a pipe goes back to the buffer it would have come from (before a detach).
static void unpipe(int p[2], size_t* held, struct buf* b) {
  while (*held > 0 && buf_reserve(b, *held) == 0) {
    ssize_t n = read(p[0], b->data + b->len, *held);
    if (n <= 0) break;
    b->len += n;
    *held -= n;
  }
}

// Stops watching `fd`. Needed before every close: a direct link is a dup of a socket the manager
// holds too, and epoll forgets a descriptor only when its file is closed everywhere (else its
// entry stays, and the hang-up wakes this loop for ever).
static void unwatch(int fd) {
  if (fd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
}

static void stream_free(struct stream* s, int err, int reset) {
  close_pipes(s);
  unwatch(s->job);
  unwatch(s->link);
  if (s->job >= 0) { if (reset) reset_close(s->job); else close(s->job); }
  if (s->link >= 0) close(s->link);
  if (s->state != PENDING && s->state != WAIT_LINK) {
    struct pj_net_msg m = s->origin;
    m.type = PJ_MSG_CLOSED; m.stream = s->id; m.err = err; m.bytes_out = s->bytes_out; m.bytes_in = s->bytes_in;
    send_msg(&m, NULL, 0);
  }
  for (struct stream** p = &streams; *p; p = &(*p)->next)
    if (*p == s) { *p = s->next; break; }
  free(s->out.data);
  free(s->in.data);
  free(s);
}

// What each side should be polled for, from the buffers and the EOFs.
static void rearm(struct stream* s) {
  if (s->job >= 0) {
    uint32_t ev = 0;
    if (s->state == ACTIVE && !s->job_eof && s->out.len < BUF_CAP && s->pout_len == 0) ev |= EPOLLIN;
    if (s->in.len > 0 || s->pin_len > 0) ev |= EPOLLOUT;
    watch(s->job, tag_of(s, 0), ev, EPOLL_CTL_MOD);
  }
  if (s->link >= 0 && s->link_eof && s->job_shut) {  // done both ways (a hang-up would wake us for ever)
    unwatch(s->link);
  } else if (s->link >= 0) {
    uint32_t ev = 0;
    if (!s->link_eof && s->in.len < BUF_CAP && s->pin_len == 0) ev |= EPOLLIN;
    if (s->out.len > 0 || s->pout_len > 0 || s->hdr_left || s->frame_left || (s->job_eof && !s->job_shut)) ev |= EPOLLOUT;
    watch(s->link, tag_of(s, 1), ev, EPOLL_CTL_MOD);
  }
}

// Bytes from the link into s->in, unframing a tunnel; 0 = more may come, 1 = EOF, -1 = error.
static int read_link(struct stream* s, int unbounded) {
  char tmp[65536];
  for (;;) {
    if (!unbounded && s->in.len >= BUF_CAP) return 0;
    ssize_t n = read(s->link, tmp, sizeof tmp);
    if (n < 0) return errno == EAGAIN ? 0 : errno == EINTR ? read_link(s, unbounded) : -1;
    if (n == 0) return 1;
    if (!s->tunnel) {
      if (buf_reserve(&s->in, n)) return -1;
      memcpy(s->in.data + s->in.len, tmp, n);
      s->in.len += n;
      s->bytes_in += n;
      continue;
    }
    for (ssize_t i = 0; i < n;) {
      if (s->rframe_left == 0 && s->rhdr_got < PJ_FRAME_HEADER) {
        s->rhdr[s->rhdr_got++] = tmp[i++];
        if (s->rhdr_got < PJ_FRAME_HEADER) continue;
        uint32_t len = pj_frame_length(s->rhdr);
        s->rhdr_got = 0;
        if (len == 0) { s->link_eof = 1; continue; }  // the outside's EOF, in band
        s->rframe_left = len;
        continue;
      }
      size_t take = (size_t)(n - i) < s->rframe_left ? (size_t)(n - i) : s->rframe_left;
      if (buf_reserve(&s->in, take)) return -1;
      memcpy(s->in.data + s->in.len, tmp + i, take);
      s->in.len += take;
      s->bytes_in += take;
      s->rframe_left -= take;
      i += take;
    }
  }
}

// s->out to the link (framed on a tunnel), then the job's EOF; 0 = done or would block, -1 = error.
static int write_link(struct stream* s) {
  for (;;) {
    if (s->tunnel && s->hdr_left == 0 && s->frame_left == 0) {
      uint32_t len;
      if (s->out.len > 0) len = s->out.len < PJ_FRAME_MAX ? s->out.len : PJ_FRAME_MAX;
      else if (s->job_eof && !s->job_shut) len = 0;
      else return 0;
      pj_frame_header(s->hdr, len);
      s->hdr_left = PJ_FRAME_HEADER;
      s->frame_left = len;
      if (len == 0) s->job_shut = 1;
    }
    if (s->hdr_left) {
      ssize_t n = write(s->link, s->hdr + PJ_FRAME_HEADER - s->hdr_left, s->hdr_left);
      if (n < 0) return errno == EAGAIN ? 0 : -1;
      s->hdr_left -= n;
      continue;
    }
    size_t want = s->tunnel ? s->frame_left : s->out.len;
    if (want == 0) {
      if (!s->tunnel && s->job_eof && !s->job_shut) { shutdown(s->link, SHUT_WR); s->job_shut = 1; }
      return 0;
    }
    ssize_t n = write(s->link, s->out.data, want);
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    buf_consume(&s->out, n);
    if (s->tunnel) s->frame_left -= n;
  }
}

// from -> pipe -> to, without copying; 0 (done or would block) or -1; *eof once `from` ended.
static int splice_through(int from, int p[2], size_t* held, int to, int* eof, uint64_t* count) {
  for (;;) {
    if (*held > 0) {
      ssize_t w = splice(p[0], NULL, to, NULL, *held, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (w < 0) return errno == EAGAIN ? 0 : -1;
      *held -= w;
      if (*held > 0) return 0;
    }
    if (*eof) return 0;
    ssize_t r = splice(from, NULL, p[1], NULL, PIPE_CAP, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    if (r < 0) return errno == EAGAIN ? 0 : -1;
    if (r == 0) { *eof = 1; return 0; }
    *held += r;
    *count += r;
  }
}

// A direct link with its buffers empty: bytes go by splice, both ways.
static int pump_spliced(struct stream* s) {
  if (s->pout[0] < 0) {
    if (pipe2(s->pout, O_NONBLOCK | O_CLOEXEC) || pipe2(s->pin, O_NONBLOCK | O_CLOEXEC)) return -1;
    fcntl(s->pout[0], F_SETPIPE_SZ, PIPE_CAP);
    fcntl(s->pin[0], F_SETPIPE_SZ, PIPE_CAP);
  }
  if (s->out.len == 0 && !s->job_shut && splice_through(s->job, s->pout, &s->pout_len, s->link, &s->job_eof, &s->bytes_out) < 0) return -1;
  if (s->in.len == 0 && splice_through(s->link, s->pin, &s->pin_len, s->job, &s->link_eof, &s->bytes_in) < 0) return -1;
  return 0;
}

// A tunnel the holder ended without the outside's EOF: it was paused for a detach that did not
// happen here (it timed out), or the holder went away. The holder flushed it before ending it,
// so the stream asks for a link again; a holder that no longer has the connection refuses that.
static void relink(struct stream* s) {
  unwatch(s->link);
  close(s->link);
  s->link = -1;
  s->state = DETACHED_STREAM;
  if (!detached) ask_link(s);
  if (s->state == DETACHED_STREAM) rearm(s);
}

static void pump(struct stream* s, uint32_t events) {
  if (events & EPOLLERR) return stream_free(s, ECONNRESET, 1);
  if (s->state == ACTIVE && s->link >= 0 && !s->tunnel && s->out.len == 0 && s->in.len == 0) {
    if (pump_spliced(s) < 0) return stream_free(s, errno ? errno : EPIPE, 1);
    if (s->job_eof && s->pout_len == 0 && !s->job_shut) { shutdown(s->link, SHUT_WR); s->job_shut = 1; }
    if (s->link_eof && s->pin_len == 0 && !s->link_shut) { shutdown(s->job, SHUT_WR); s->link_shut = 1; }
    if (s->job_shut && s->link_shut) return stream_free(s, 0, 0);
    return rearm(s);
  }
  // job -> out
  while (s->state == ACTIVE && !s->job_eof && s->out.len < BUF_CAP) {
    if (buf_reserve(&s->out, 65536)) break;
    ssize_t n = read(s->job, s->out.data + s->out.len, s->out.cap - s->out.len);
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) return stream_free(s, errno, 0);
    if (n == 0) { s->job_eof = 1; break; }
    s->out.len += n;
    s->bytes_out += n;
  }
  if (s->link >= 0) {
    if (write_link(s) < 0) return stream_free(s, errno ? errno : EPIPE, 1);
    int r = read_link(s, 0);
    if (r < 0) return stream_free(s, errno ? errno : ECONNRESET, 1);
    if (r == 1) {
      if (s->tunnel && !s->link_eof) return relink(s);
      s->link_eof = 1;
    }
  }
  // in -> job
  while (s->in.len > 0) {
    ssize_t n = write(s->job, s->in.data, s->in.len);
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) return stream_free(s, errno, 0);
    buf_consume(&s->in, n);
  }
  if (s->link_eof && s->in.len == 0 && !s->link_shut) { shutdown(s->job, SHUT_WR); s->link_shut = 1; }
  if (s->job_shut && s->link_shut) return stream_free(s, 0, 0);
  if (s->link >= 0 && s->link_eof && s->job_shut) {  // the link has nothing more to carry either way
    unwatch(s->link);
    close(s->link);
    s->link = -1;
  }
  rearm(s);
}

static void set_link(struct stream* s, int fd, int tunnel) {
  s->link = fd;
  s->tunnel = tunnel;
  s->hdr_left = 0; s->frame_left = 0; s->rhdr_got = 0; s->rframe_left = 0;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  watch(fd, tag_of(s, 1), 0, EPOLL_CTL_ADD);
  s->state = ACTIVE;
}

// Asks the manager for a link: a new connection (OPEN) or one from before a move (ATTACH).
static void ask_link(struct stream* s) {
  if (s->link_eof && s->job_shut) { s->state = ACTIVE; return; }  // nothing left for a link to carry
  struct pj_net_msg m = s->origin;
  m.type = s->state == PENDING ? PJ_MSG_OPEN : PJ_MSG_ATTACH;
  m.stream = s->id;
  m.bytes_out = s->bytes_out; m.bytes_in = s->bytes_in;
  int fresh = ctl < 0;
  if (ctl_open() < 0 || send_msg(&m, NULL, 0) < 0) {
    if (s->state == PENDING) return stream_free(s, ECONNREFUSED, 1);  // no manager here: refused, as a dead host would
    return;  // a detached stream waits for the next reattach
  }
  s->state = WAIT_LINK;
  if (fresh)  // links lost with a manager that went away are asked of this one too
    for (struct stream* t = streams, *next; t; t = next) {
      next = t->next;
      if (t->state == DETACHED_STREAM) ask_link(t);
    }
}

static struct stream* stream_new(int job) {
  struct stream* s = calloc(1, sizeof *s);
  if (!s) { reset_close(job); return NULL; }
  s->id = next_id++;
  s->job = job;
  s->link = -1;
  s->pout[0] = s->pout[1] = s->pin[0] = s->pin[1] = -1;
  s->state = PENDING;
  s->next = streams;
  streams = s;
  watch(job, tag_of(s, 0), 0, EPOLL_CTL_ADD);
  return s;
}

static void on_accept(void) {
  for (;;) {
    struct sockaddr_in local;
    socklen_t len = sizeof local;
    int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    getsockname(fd, (struct sockaddr*)&local, &len);  // tproxy: the address the job asked for
    struct stream* s = stream_new(fd);
    if (!s) continue;
    s->origin.addr = local.sin_addr.s_addr;
    s->origin.port = ntohs(local.sin_port);
    if (!detached) ask_link(s);
  }
}

static struct stream* find(uint32_t id) {
  for (struct stream* s = streams; s; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

// A connection from outside to the job's own port: connected inside, relayed like the others.
static void on_inbound(struct pj_net_msg* m, int fd) {
  int job = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(m->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (job < 0 || connect(job, (struct sockaddr*)&a, sizeof a) != 0) {  // loopback: at once
    struct pj_net_msg no = *m;
    no.type = PJ_MSG_ACCEPTED; no.err = errno;
    if (job >= 0) close(job);
    reset_close(fd);
    send_msg(&no, NULL, 0);
    return;
  }
  fcntl(job, F_SETFL, O_NONBLOCK);
  int one = 1;
  setsockopt(job, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct stream* s = stream_new(job);
  if (!s) { reset_close(fd); return; }
  s->origin = *m;
  s->state = WAIT_LINK;
  set_link(s, fd, m->flags & PJ_LINK_TUNNEL);
  struct pj_net_msg ack = s->origin;
  ack.type = PJ_MSG_ACCEPTED; ack.stream = s->id;
  send_msg(&ack, NULL, 0);  // tells the manager our id for it
  pump(s, 0);
}

// Closes every link so that only the job's loopback connections remain; a tunnel
// is read to its end first (the holder stopped and flushed it), its bytes kept.
// A tunnel its holder does not end in time is kept as it is, and the detach fails
// (the move is given up): closing it would lose what the holder has under way.
static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000L + t.tv_nsec / 1000000;
}

static void detach_all(void) {
  uint32_t kept = 0;
  long drain_deadline = now_ms() + DRAIN_MS;
  for (struct stream* s = streams, *next; s; s = next) {
    next = s->next;
    if (s->state == WAIT_LINK) s->state = DETACHED_STREAM;  // an OPENED that never came: ask again after
    if (s->state != ACTIVE) continue;
    unpipe(s->pout, &s->pout_len, &s->out);
    unpipe(s->pin, &s->pin_len, &s->in);
    close_pipes(s);
    if (s->link < 0) { s->state = DETACHED_STREAM; continue; }
    if (s->tunnel) {
      int flags = fcntl(s->link, F_GETFL);
      fcntl(s->link, F_SETFL, flags & ~O_NONBLOCK);
      long left = drain_deadline - now_ms();  // one deadline for all of them, as the manager waits once
      if (left < 1) left = 1;
      struct timeval tv = {left / 1000, (left % 1000) * 1000};
      setsockopt(s->link, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      setsockopt(s->link, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      // the frame under way is finished, so that the holder reads whole frames only
      while (s->hdr_left || s->frame_left) if (write_link(s) < 0) break;
      int r = read_link(s, 1);
      fcntl(s->link, F_SETFL, flags);
      if (r < 0) {  // the holder broke the tunnel: the connection is gone
        dprintf(2, "pj-init: connection to %s lost in the move: its tunnel broke (%s)\n", s->origin.holder, strerror(errno));
        stream_free(s, ECONNRESET, 1);
        continue;
      }
      if (r != 1) {  // not ended within DRAIN_MS: kept, and the move does not happen
        dprintf(2, "pj-init: the tunnel to %s did not end within %d ms: the job stays\n", s->origin.holder, DRAIN_MS);
        kept++;
        rearm(s);
        continue;
      }
    }
    unwatch(s->link);
    close(s->link);
    s->link = -1;
    s->state = DETACHED_STREAM;
    rearm(s);
  }
  struct pj_net_msg m = {.type = PJ_MSG_DETACHED, .err = kept ? ETIMEDOUT : 0, .stream = kept};
  send_msg(&m, NULL, 0);
  if (kept) return;  // still attached here: the manager gives the move up and says PJ_SIG_REATTACH
  ctl_close();
  detached = 1;
}

static void reattach(void) {
  detached = 0;
  int one = 1;  // in case the restore did not bring the listener's tproxy flag back
  setsockopt(listener, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
  ctl_open();  // so that this host's manager can hand us inbound connections
  for (struct stream* s = streams, *next; s; s = next) {
    next = s->next;
    if (s->state == DETACHED_STREAM || s->state == PENDING) ask_link(s);
  }
}

static void on_ctl(void) {
  for (;;) {
    char buf[sizeof(struct pj_net_msg) + 65536];
    struct iovec iov = {buf, sizeof buf};
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(ctl, &h, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {  // the manager went away: links stay as they are, new ones are asked of the next one
      ctl_close();
      for (struct stream* s = streams; s; s = s->next) if (s->state == WAIT_LINK) s->state = DETACHED_STREAM;
      return;
    }
    int fd = -1;
    struct cmsghdr* c = CMSG_FIRSTHDR(&h);
    if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
    if ((size_t)n < sizeof(struct pj_net_msg)) { if (fd >= 0) close(fd); continue; }
    struct pj_net_msg* m = (struct pj_net_msg*)buf;
    const char* payload = buf + sizeof *m;
    size_t plen = n - sizeof *m;
    if (m->type == PJ_MSG_DETACH) { detach_all(); return; }
    if (m->type == PJ_MSG_INBOUND) { if (fd >= 0) on_inbound(m, fd); continue; }
    if (m->type == PJ_MSG_DNS_REPLY) {
      struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(m->port), .sin_addr.s_addr = m->addr};
      sendto(dns, payload, plen, MSG_DONTWAIT, (struct sockaddr*)&to, sizeof to);
      continue;
    }
    if (m->type != PJ_MSG_OPENED) { if (fd >= 0) close(fd); continue; }
    struct stream* s = find(m->stream);
    if (!s || s->state != WAIT_LINK) { if (fd >= 0) close(fd); continue; }
    if (m->err != 0 || fd < 0) { s->state = PENDING; stream_free(s, m->err, 1); continue; }
    s->origin.key = m->key;
    memcpy(s->origin.holder, m->holder, sizeof m->holder);
    set_link(s, fd, m->flags & PJ_LINK_TUNNEL);
    pump(s, 0);
  }
}

static void on_dns(void) {
  for (;;) {
    char q[4096];
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(dns, q, sizeof q, MSG_DONTWAIT, (struct sockaddr*)&from, &len);
    if (n < 0) return;
    if (detached || ctl_open() < 0) continue;  // unanswered: the resolver asks again
    struct pj_net_msg m = {.type = PJ_MSG_DNS, .addr = from.sin_addr.s_addr, .port = ntohs(from.sin_port)};
    send_msg(&m, q, n);
  }
}

static void report_bytes(void) {
  for (struct stream* s = streams; s; s = s->next) {
    if (s->state != ACTIVE || (s->bytes_out == s->reported_out && s->bytes_in == s->reported_in)) continue;
    struct pj_net_msg m = s->origin;
    m.type = PJ_MSG_BYTES; m.stream = s->id; m.bytes_out = s->bytes_out; m.bytes_in = s->bytes_in;
    if (send_msg(&m, NULL, 0) == 0) { s->reported_out = s->bytes_out; s->reported_in = s->bytes_in; }
  }
}

int relay_setup(const char* path) {
  sock_path = path;
  ep = epoll_create1(EPOLL_CLOEXEC);
  listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  dns = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_IP, IP_TRANSPARENT, &one, sizeof one);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PJ_RELAY_PORT), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(listener, (struct sockaddr*)&a, sizeof a) != 0 || listen(listener, 512) != 0) return -1;
  a.sin_port = htons(PJ_DNS_PORT);
  if (bind(dns, (struct sockaddr*)&a, sizeof a) != 0) return -1;
  watch(listener, TAG_LISTENER, EPOLLIN, EPOLL_CTL_ADD);
  watch(dns, TAG_DNS, EPOLLIN, EPOLL_CTL_ADD);
  ctl_open();  // at once, so that this host's manager can hand us inbound connections (no manager: later)
  return 0;
}

int relay_loop(pid_t program) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, PJ_SIG_REATTACH);
  sigprocmask(SIG_BLOCK, &set, NULL);
  sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  watch(sigfd, TAG_SIG, EPOLLIN, EPOLL_CTL_ADD);
  time_t last_report = time(NULL);
  int status;
  if (waitpid(program, &status, WNOHANG) == program) return status;  // ended before SIGCHLD was blocked
  for (;;) {
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, 1000);
    if (n < 0 && errno != EINTR) return -1;
    for (int i = 0; i < n; i++) {
      uint64_t tag = evs[i].data.u64;
      if (tag == TAG_LISTENER) on_accept();
      else if (tag == TAG_DNS) on_dns();
      else if (tag == TAG_CTL) { if (ctl >= 0) on_ctl(); }
      else if (tag == TAG_SIG) {
        struct signalfd_siginfo si;
        while (read(sigfd, &si, sizeof si) == sizeof si) {
          if (si.ssi_signo == PJ_SIG_REATTACH) { reattach(); continue; }
          pid_t p;
          while ((p = waitpid(-1, &status, WNOHANG)) > 0)
            if (p == program) return status;
        }
      } else {
        struct stream* s = (struct stream*)(uintptr_t)(tag & ~(uint64_t)1);
        for (struct stream* t = streams; t; t = t->next)
          if (t == s) { pump(s, evs[i].events); break; }  // a stream freed earlier in this batch is gone
      }
    }
    if (time(NULL) != last_report) { report_bytes(); last_report = time(NULL); }
  }
}
