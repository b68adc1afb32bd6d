// SO_PEERCRED on a connected unix socket: who is calling the control socket.
// See unix(7), socket(7).
#include <sys/socket.h>
#include <cerrno>
#include "error-context.h"

namespace pj {

// peerCred(fd, ctx) -> { pid, uid, gid } | undefined (ctx filled)
Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "fd")) return info.Env().Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return FailWith(info, 1, errno, "getsockopt");
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("pid", Napi::Number::New(info.Env(), cred.pid));
  out.Set("uid", Napi::Number::New(info.Env(), cred.uid));
  out.Set("gid", Napi::Number::New(info.Env(), cred.gid));
  return out;
}

}  // namespace pj
