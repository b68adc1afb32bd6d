// The /dev/fuse side of the FUSE engine: open the device, mount(2) it, read
// requests on the event loop and hand each to JavaScript, write replies, and
// the passthrough ioctls. What each request means is decided in TypeScript
// (fs-layer/). One channel is enough: requests are decided on one JavaScript
// thread, so FUSE_DEV_IOC_CLONE'd channels would only add hand-offs.
// See fuse(4), mount(2), and the kernel's include/uapi/linux/fuse.h.
#include <napi.h>
#include <uv.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>
#include "error-context.h"
#include "fuse-kernel.h"

namespace pj {

// fuseOpen(ctx) -> fd : a fresh /dev/fuse (close-on-exec)
Napi::Value FuseOpen(const Napi::CallbackInfo& info) {
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return FailWith(info, 0, errno, "open");
  return Napi::Number::New(info.Env(), fd);
}

// fuseMount(fd, target, fsname, extraOptions, ctx) -> true
Napi::Value FuseMount(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd")) return info.Env().Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string target = info[1].As<Napi::String>();
  std::string fsname = info[2].As<Napi::String>();
  std::string extra = info[3].As<Napi::String>();
  std::string opts = "fd=" + std::to_string(fd) + ",rootmode=40000,user_id=0,group_id=0" + (extra.empty() ? "" : "," + extra);
  if (mount(fsname.c_str(), target.c_str(), "fuse.pj", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
    return FailWith(info, 4, errno, "mount");
  return Napi::Boolean::New(info.Env(), true);
}

// fuseUnmount(target, lazy, ctx) -> true
Napi::Value FuseUnmount(const Napi::CallbackInfo& info) {
  std::string target = info[0].As<Napi::String>();
  bool lazy = info[1].As<Napi::Boolean>();
  if (umount2(target.c_str(), lazy ? MNT_DETACH : 0) != 0) return FailWith(info, 2, errno, "umount2");
  return Napi::Boolean::New(info.Env(), true);
}

// fuseBackingOpen(devFd, fileFd, ctx) -> backing id for FOPEN_PASSTHROUGH
Napi::Value FuseBackingOpen(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "devFd") || !RequireInt(info, 1, "fileFd")) return info.Env().Undefined();
  struct fuse_backing_map map{};
  map.fd = info[1].As<Napi::Number>().Int32Value();
  int id = ioctl(info[0].As<Napi::Number>().Int32Value(), FUSE_DEV_IOC_BACKING_OPEN, &map);
  if (id < 0) return FailWith(info, 2, errno, "ioctl");
  return Napi::Number::New(info.Env(), id);
}

// fuseBackingClose(devFd, id, ctx) -> true
Napi::Value FuseBackingClose(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "devFd") || !RequireInt(info, 1, "id")) return info.Env().Undefined();
  uint32_t id = info[1].As<Napi::Number>().Uint32Value();
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), FUSE_DEV_IOC_BACKING_CLOSE, &id) != 0) return FailWith(info, 2, errno, "ioctl");
  return Napi::Boolean::New(info.Env(), true);
}

// fuseWrite(fd, buffers[], ctx) -> bytes : one reply (header and body) in one writev.
// ENOENT means the request was interrupted meanwhile: not an error for the caller to act on.
Napi::Value FuseWrite(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd")) return info.Env().Undefined();
  Napi::Array parts = info[1].As<Napi::Array>();
  std::vector<struct iovec> iov(parts.Length());
  for (uint32_t i = 0; i < parts.Length(); i++) {
    Napi::Buffer<uint8_t> b = parts.Get(i).As<Napi::Buffer<uint8_t>>();
    iov[i].iov_base = b.Data();
    iov[i].iov_len = b.Length();
  }
  ssize_t n = writev(info[0].As<Napi::Number>().Int32Value(), iov.data(), static_cast<int>(iov.size()));
  if (n < 0) return FailWith(info, 2, errno, "writev");
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

// fuseStartReader(fd, bufferSize, onRequest(buf), onEnd(errno)): requests are
// read on the JavaScript thread itself, from a libuv poll watcher on the
// non-blocking channel, and handed to onRequest one by one. A reader thread
// handing them over through a ThreadSafeFunction cost a cross-CPU wake-up per
// request (a local lookup took 115 us). Ends when the connection goes away
// (ENODEV after unmount or abort): the channel is closed and onEnd called.
struct Reader {
  uv_poll_t poll;
  int fd;
  std::vector<uint8_t> scratch;  // the kernel wants room for max_write + headers on every read
  Napi::FunctionReference onRequest;
  Napi::FunctionReference onEnd;
  Napi::AsyncContext* context;
  napi_env env;
};

static void EndReader(Reader* r, int err) {
  uv_poll_stop(&r->poll);
  close(r->fd);
  Napi::Env env(r->env);
  Napi::HandleScope scope(env);
  r->onEnd.MakeCallback(env.Global(), {Napi::Number::New(env, err)}, *r->context);
  uv_close(reinterpret_cast<uv_handle_t*>(&r->poll), [](uv_handle_t* h) {
    Reader* rr = static_cast<Reader*>(h->data);
    delete rr->context;
    delete rr;
  });
}

static void OnReadable(uv_poll_t* handle, int status, int) {
  Reader* r = static_cast<Reader*>(handle->data);
  if (status < 0) return EndReader(r, EIO);
  Napi::Env env(r->env);
  for (;;) {
    ssize_t n = read(r->fd, r->scratch.data(), r->scratch.size());
    if (n < 0) {
      int err = errno;
      if (err == EAGAIN) return;
      if (err == EINTR || err == ENOENT) continue;  // ENOENT: interrupted before we read it
      return EndReader(r, err);
    }
    Napi::HandleScope scope(env);
    Napi::Buffer<uint8_t> req = Napi::Buffer<uint8_t>::Copy(env, r->scratch.data(), static_cast<size_t>(n));
    r->onRequest.MakeCallback(env.Global(), {req}, *r->context);
  }
}

Napi::Value FuseStartReader(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd") || !RequireInt(info, 1, "bufferSize")) return info.Env().Undefined();
  Napi::Env env = info.Env();
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    Napi::Error::New(env, "no event loop").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* r = new Reader();
  r->fd = info[0].As<Napi::Number>().Int32Value();
  r->scratch.resize(info[1].As<Napi::Number>().Uint32Value());
  r->onRequest = Napi::Persistent(info[2].As<Napi::Function>());
  r->onEnd = Napi::Persistent(info[3].As<Napi::Function>());
  r->context = new Napi::AsyncContext(env, "fuse-request");
  r->env = env;
  fcntl(r->fd, F_SETFL, fcntl(r->fd, F_GETFL) | O_NONBLOCK);
  uv_poll_init(loop, &r->poll, r->fd);
  r->poll.data = r;
  uv_poll_start(&r->poll, UV_READABLE, OnReadable);
  return env.Undefined();
}

}  // namespace pj
