// Probes userfaultfd(2) for `pj doctor`: opens one, negotiates UFFDIO_API and
// reports the feature bits the kernel offers (write-protect, minor faults, ...).
// See userfaultfd(2), ioctl_userfaultfd(2).
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
#include <cerrno>
#include "error-context.h"

namespace pj {

// uffdProbe(ctx) -> { features: bigint-as-number, ioctls: number } | undefined
Napi::Value UffdProbe(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) return FailWith(info, 0, errno, "userfaultfd");
  struct uffdio_api api{};
  api.api = UFFD_API;
  api.features = 0;  // ask for nothing: the kernel answers with everything it supports
  int rc = ioctl(fd, UFFDIO_API, &api);
  int err = errno;
  close(fd);
  if (rc != 0) return FailWith(info, 0, err, "ioctl");
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("features", Napi::Number::New(info.Env(), static_cast<double>(api.features)));
  out.Set("ioctls", Napi::Number::New(info.Env(), static_cast<double>(api.ioctls)));
  return out;
}

}  // namespace pj
