// openat2(2) with RESOLVE_BENEATH: the only way the fs-layer resolves a path
// inside an export, so that "..", absolute symlinks and symlink races can never
// lead outside it. See openat2(2).
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
#include <cerrno>
#include <string>
#include "error-context.h"

namespace pj {

// openat2(dirfd, path, flags, mode, resolve, ctx) -> fd
Napi::Value Openat2(const Napi::CallbackInfo& info) {
  for (size_t i : {0, 2, 3, 4}) if (!RequireInt(info, i, "openat2 argument")) return info.Env().Undefined();
  std::string path = info[1].As<Napi::String>();
  struct open_how how{};
  how.flags = static_cast<uint64_t>(info[2].As<Napi::Number>().Uint32Value()) | O_CLOEXEC;
  how.mode = (how.flags & (O_CREAT | O_TMPFILE)) ? info[3].As<Napi::Number>().Uint32Value() : 0;
  how.resolve = info[4].As<Napi::Number>().Uint32Value();
  long fd;
  do {
    fd = syscall(SYS_openat2, info[0].As<Napi::Number>().Int32Value(), path.c_str(), &how, sizeof(how));
  } while (fd < 0 && errno == EAGAIN);  // a concurrent rename raced the lookup: try again
  if (fd < 0) return FailWith(info, 5, errno, "openat2");
  return Napi::Number::New(info.Env(), static_cast<double>(fd));
}

}  // namespace pj
