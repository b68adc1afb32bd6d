// File locks taken on the owner host for /pj: open-file-description locks
// (F_OFD_*: owned by an fd, not by our process, so locks for different remote
// owners conflict as they should) and flock(2). Never blocking: waiting is
// done by retrying, so the agent's thread never sleeps in the kernel.
// See fcntl(2) "Open file description locks", flock(2).
#include <fcntl.h>
#include <sys/file.h>
#include <cerrno>
#include "error-context.h"

namespace pj {

// ofdLock(fd, cmd 'get'|'set', type, start, len, ctx) -> for 'get': { type, start, len }; for 'set': true
Napi::Value OfdLock(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd") || !RequireInt(info, 2, "type") || !RequireInt(info, 3, "start") || !RequireInt(info, 4, "len"))
    return info.Env().Undefined();
  std::string cmd = info[1].As<Napi::String>();
  struct flock fl{};
  fl.l_type = static_cast<short>(info[2].As<Napi::Number>().Int32Value());
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(info[3].As<Napi::Number>().Int64Value());
  fl.l_len = static_cast<off_t>(info[4].As<Napi::Number>().Int64Value());
  fl.l_pid = 0;  // required by F_OFD_*
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fcntl(fd, cmd == "get" ? F_OFD_GETLK : F_OFD_SETLK, &fl) != 0) return FailWith(info, 5, errno, "fcntl");
  if (cmd != "get") return Napi::Boolean::New(info.Env(), true);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("type", Napi::Number::New(info.Env(), fl.l_type));
  out.Set("start", Napi::Number::New(info.Env(), static_cast<double>(fl.l_start)));
  out.Set("len", Napi::Number::New(info.Env(), static_cast<double>(fl.l_len)));
  return out;
}

// flock(fd, operation, ctx) -> true ; operation includes LOCK_NB
Napi::Value Flock(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd") || !RequireInt(info, 1, "operation")) return info.Env().Undefined();
  if (flock(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()) != 0) return FailWith(info, 2, errno, "flock");
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace pj
