// The owner of an export acting as a squashed caller: this thread's filesystem
// identity becomes uid:gid with no supplementary groups, so that the kernel's own
// permission checks, ownership and setgid rules apply to what it does next; and
// back. Per thread, by raw syscalls: glibc's setgroups would change every thread
// of the process (it broadcasts set*id calls), and only the thread answering the
// request may act as its caller. See setfsuid(2), setgroups(2), credentials(7).
#include <sys/syscall.h>
#include <unistd.h>
#include <cerrno>
#include <vector>
#include "error-context.h"

namespace pj {
namespace {

std::vector<gid_t> ownGroups;
bool saved = false;

// setfsuid/setfsgid answer with the previous id and never fail: whether one took effect, a second
// call (with an invalid id, which changes nothing) tells.
bool SetFs(long nr, unsigned id) {
  syscall(nr, id);
  return static_cast<unsigned>(syscall(nr, -1)) == id;
}

}  // namespace

// actAs(uid, gid, ctx) -> true | undefined (ctx filled; this thread is then as it was)
Napi::Value ActAs(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "uid") || !RequireInt(info, 1, "gid")) return info.Env().Undefined();
  if (!saved) {
    int n = getgroups(0, nullptr);
    ownGroups.resize(n > 0 ? n : 0);
    if (n > 0 && getgroups(n, ownGroups.data()) < 0) return FailWith(info, 2, errno, "getgroups");
    saved = true;
  }
  if (syscall(SYS_setgroups, 0, nullptr) != 0) return FailWith(info, 2, errno, "setgroups");
  if (!SetFs(SYS_setfsgid, info[1].As<Napi::Number>().Uint32Value()) || !SetFs(SYS_setfsuid, info[0].As<Napi::Number>().Uint32Value())) {
    SetFs(SYS_setfsgid, getegid());
    syscall(SYS_setgroups, ownGroups.size(), ownGroups.data());
    return FailWith(info, 2, EPERM, "setfsuid");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// actAsSelf(): this thread's filesystem identity and groups as the process's again.
Napi::Value ActAsSelf(const Napi::CallbackInfo& info) {
  SetFs(SYS_setfsuid, geteuid());
  SetFs(SYS_setfsgid, getegid());
  if (saved) syscall(SYS_setgroups, ownGroups.size(), ownGroups.data());
  return info.Env().Undefined();
}

}  // namespace pj
