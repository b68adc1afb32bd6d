// One seqpacket message with a descriptor attached (SCM_RIGHTS), as the agent's
// helpers pass them: the connection holder, the pager and its keeper, the jobs'
// relays. C and C++ alike.
#pragma once
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// Sends `len` bytes with `fd` attached (none when fd < 0): sendmsg's result. Never SIGPIPE.
static inline ssize_t pj_send_fd(int sock, const void* data, size_t len, int fd, int flags) {
  struct iovec iov;
  iov.iov_base = (void*)data;
  iov.iov_len = len;
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
  struct msghdr h;
  memset(&h, 0, sizeof h);
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  if (fd >= 0) {
    memset(&control, 0, sizeof control);
    h.msg_control = control.buf;
    h.msg_controllen = sizeof control.buf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return sendmsg(sock, &h, flags | MSG_NOSIGNAL);
}

// Receives one message (at most `len` bytes): recvmsg's result. *fd is the descriptor that came
// with it (close-on-exec), or -1; any more than one are closed.
static inline ssize_t pj_recv_fd(int sock, void* data, size_t len, int* fd, int flags) {
  struct iovec iov;
  iov.iov_base = data;
  iov.iov_len = len;
  union { char buf[CMSG_SPACE(sizeof(int) * 4)]; struct cmsghdr align; } control;
  struct msghdr h;
  memset(&h, 0, sizeof h);
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  h.msg_control = control.buf;
  h.msg_controllen = sizeof control.buf;
  ssize_t n = recvmsg(sock, &h, flags | MSG_CMSG_CLOEXEC);
  *fd = -1;
  for (struct cmsghdr* c = n >= 0 ? CMSG_FIRSTHDR(&h) : NULL; c; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (*fd < 0) *fd = got;
      else close(got);
    }
  }
  return n;
}
