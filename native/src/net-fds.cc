// Descriptors for the net-layer: the seqpacket channel on which each job's
// init talks to this host's manager (messages with descriptors attached,
// SCM_RIGHTS, which Node cannot receive), and TCP connects that hand back a
// bare descriptor (an outside connection the job's init reads itself, with no
// Node stream taking bytes from it).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>
#include "error-context.h"
#include "unix-listen.h"

namespace pj {

static constexpr size_t kMaxMessage = 256 * 1024;
static constexpr int kMaxFds = 4;

// One watched descriptor (the listening socket or a connection), polled on Node's loop.
struct Watch {
  uv_poll_t poll;
  int fd;
  bool listening;
  Napi::FunctionReference onMessage;  // (fd, data | null, fds, pid)
};

static void CloseWatch(Watch* w) {
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) {
    Watch* ww = static_cast<Watch*>(h->data);
    close(ww->fd);
    ww->onMessage.Reset();
    delete ww;
  });
}

static void StartWatch(uv_loop_t* loop, int fd, bool listening, const Napi::Function& cb);

static void OnReady(uv_poll_t* handle, int status, int) {
  Watch* w = static_cast<Watch*>(handle->data);
  Napi::Env env = w->onMessage.Env();
  Napi::HandleScope scope(env);
  uv_loop_t* loop = handle->loop;
  if (w->listening) {
    for (;;) {
      int c = accept4(w->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;  // EAGAIN, or a connection that went away before accept
      StartWatch(loop, c, false, w->onMessage.Value());
    }
  }
  std::vector<char> buf(kMaxMessage);
  for (;;) {
    struct iovec iov = {buf.data(), buf.size()};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    struct msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = status < 0 ? -1 : recvmsg(w->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    int fd = w->fd;
    if (n <= 0) {  // the init closed its end (or the socket failed): one last call with null
      Napi::Function cb = w->onMessage.Value();
      CloseWatch(w);
      cb.Call({Napi::Number::New(env, fd), env.Null(), Napi::Array::New(env), Napi::Number::New(env, 0)});
      return;
    }
    Napi::Array fds = Napi::Array::New(env);
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int got;
        memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.Set(fds.Length(), Napi::Number::New(env, got));
      }
    }
    struct ucred cred{};
    socklen_t len = sizeof cred;
    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
    w->onMessage.Value().Call({Napi::Number::New(env, fd), Napi::Buffer<char>::Copy(env, buf.data(), n), fds, Napi::Number::New(env, cred.pid)});
  }
}

static void StartWatch(uv_loop_t* loop, int fd, bool listening, const Napi::Function& cb) {
  auto* w = new Watch();
  w->fd = fd;
  w->listening = listening;
  w->onMessage = Napi::Persistent(cb);
  w->poll.data = w;
  uv_poll_init(loop, &w->poll, fd);
  uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, OnReady);
}

// seqpacketServe(path, onMessage(fd, data|null, fds, pid), ctx): listens on a unix
// seqpacket socket at `path` (replacing a stale one); every message of every
// connection comes to onMessage, and null once a connection ends (it is closed then).
Napi::Value SeqpacketServe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int err = 0;
  const char* syscall = "";
  int fd = ListenUnix(path, SOCK_SEQPACKET | SOCK_NONBLOCK, 128, err, syscall);
  if (fd < 0) return FailWith(info, 2, err, syscall);
  chmod(path.c_str(), 0600);
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  StartWatch(loop, fd, true, info[1].As<Napi::Function>());
  return Napi::Number::New(env, fd);
}

// seqpacketConnect(path, onMessage(fd, data|null, fds, pid), ctx): a connection to a unix
// seqpacket socket at `path`, its messages to onMessage as seqpacketServe's.
Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) return FailWith(info, 2, ENAMETOOLONG, "connect");
  memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return FailWith(info, 2, errno, "socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    int err = errno;
    close(fd);
    return FailWith(info, 2, err, "connect");
  }
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  StartWatch(loop, fd, false, info[1].As<Napi::Function>());
  return Napi::Number::New(env, fd);
}

// seqpacketSend(fd, data, fds, ctx): one message, never blocking (EAGAIN is a failure).
Napi::Value SeqpacketSend(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd")) return info.Env().Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<char> data = info[1].As<Napi::Buffer<char>>();
  Napi::Array fds = info[2].As<Napi::Array>();
  struct iovec iov = {data.Data(), data.Length()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  struct msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  uint32_t count = fds.Length() > kMaxFds ? kMaxFds : fds.Length();
  if (count > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    for (uint32_t i = 0; i < count; i++) {
      int v = fds.Get(i).As<Napi::Number>().Int32Value();
      memcpy(CMSG_DATA(c) + i * sizeof(int), &v, sizeof(int));
    }
  }
  if (sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) return FailWith(info, 3, errno, "sendmsg");
  return Napi::Boolean::New(info.Env(), true);
}

// closeFd(fd), dupFd(fd, ctx): descriptors the manager holds without a Node stream.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd")) return info.Env().Undefined();
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value DupFd(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd")) return info.Env().Undefined();
  int d = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 3);
  if (d < 0) return FailWith(info, 1, errno, "fcntl");
  return Napi::Number::New(info.Env(), d);
}

// fdOfProcess(pid, fd, ctx) -> a duplicate (close-on-exec) of descriptor `fd` of process `pid`
// (pidfd_getfd(2)): how a restarted manager takes back the /dev/fuse that a keeper process held for it.
Napi::Value FdOfProcess(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "pid") || !RequireInt(info, 1, "fd")) return info.Env().Undefined();
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, info[0].As<Napi::Number>().Int32Value(), 0));
  if (pidfd < 0) return FailWith(info, 2, errno, "pidfd_open");
  int d = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, info[1].As<Napi::Number>().Int32Value(), 0));
  int err = errno;
  close(pidfd);
  if (d < 0) return FailWith(info, 2, err, "pidfd_getfd");
  return Napi::Number::New(info.Env(), d);
}

// A blocking connect with a deadline, on a worker thread; then `hello` is written whole.
class ConnectWorker : public Napi::AsyncWorker {
 public:
  ConnectWorker(Napi::Env env, std::string ip, int port, int timeoutMs, std::vector<char> hello)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), ip_(std::move(ip)), port_(port), timeoutMs_(timeoutMs), hello_(std::move(hello)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    struct sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    if (inet_pton(AF_INET, ip_.c_str(), &a.sin_addr) != 1) { err_ = EINVAL; return; }
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) { err_ = errno; return; }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) return fail(errno);
    struct pollfd p = {fd_, POLLOUT, 0};
    int r = poll(&p, 1, timeoutMs_);
    if (r == 0) return fail(ETIMEDOUT);
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) return fail(soerr);
    size_t off = 0;
    while (off < hello_.size()) {
      ssize_t n = send(fd_, hello_.data() + off, hello_.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) { poll(&p, 1, timeoutMs_); continue; }
      if (n < 0) return fail(errno);
      off += n;
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ == 0) return deferred_.Resolve(Napi::Number::New(env, fd_));
    Napi::Object o = Napi::Object::New(env);
    o.Set("errno", Napi::Number::New(env, err_));
    o.Set("syscall", Napi::String::New(env, "connect"));
    deferred_.Resolve(o);
  }

 private:
  void fail(int e) { err_ = e; close(fd_); fd_ = -1; }
  Napi::Promise::Deferred deferred_;
  std::string ip_;
  int port_, timeoutMs_;
  std::vector<char> hello_;
  int fd_ = -1, err_ = 0;
};

// tcpConnect(ip, port, timeoutMs, hello) -> Promise<fd | { errno, syscall }>: non-blocking fd, TCP_NODELAY.
Napi::Value TcpConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<char> hello;
  if (info.Length() > 3 && info[3].IsBuffer()) {
    auto b = info[3].As<Napi::Buffer<char>>();
    hello.assign(b.Data(), b.Data() + b.Length());
  }
  auto* w = new ConnectWorker(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value(),
                              info[2].As<Napi::Number>().Int32Value(), std::move(hello));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace pj
