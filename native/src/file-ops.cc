// File operations Node's fs does not offer, for the owner's side of /pj:
// renameat2 (RENAME_NOREPLACE / RENAME_EXCHANGE), mknodat, utimensat, fallocate,
// lseek(SEEK_DATA/SEEK_HOLE), copy_file_range, and extended attributes on a
// path without following its last component (l*xattr).
// See rename(2), mknod(2), fallocate(2), lseek(2), copy_file_range(2), xattr(7).
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <cerrno>
#include <string>
#include <vector>
#include "error-context.h"

namespace pj {

static std::string Str(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::String>(); }
static int64_t I64(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int64Value(); }

// renameat2(olddirfd, oldname, newdirfd, newname, flags, ctx) -> true
Napi::Value Renameat2(const Napi::CallbackInfo& info) {
  if (renameat2(static_cast<int>(I64(info, 0)), Str(info, 1).c_str(), static_cast<int>(I64(info, 2)), Str(info, 3).c_str(),
                static_cast<unsigned>(I64(info, 4))) != 0)
    return FailWith(info, 5, errno, "renameat2");
  return Napi::Boolean::New(info.Env(), true);
}

// mknodat(dirfd, name, mode, rdev, ctx) -> true
Napi::Value Mknodat(const Napi::CallbackInfo& info) {
  if (mknodat(static_cast<int>(I64(info, 0)), Str(info, 1).c_str(), static_cast<mode_t>(I64(info, 2)), static_cast<dev_t>(I64(info, 3))) != 0)
    return FailWith(info, 4, errno, "mknodat");
  return Napi::Boolean::New(info.Env(), true);
}

// utimens(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec, ctx) -> true: nanosecond times (Node's
// utimes takes seconds as a double). An nsec of -1 is "now", -2 "leave it".
Napi::Value Utimens(const Napi::CallbackInfo& info) {
  auto time = [&](size_t i) {
    int64_t nsec = I64(info, i + 1);
    return timespec{static_cast<time_t>(I64(info, i)), nsec == -1 ? UTIME_NOW : nsec == -2 ? UTIME_OMIT : static_cast<long>(nsec)};
  };
  timespec times[2] = {time(1), time(3)};
  if (utimensat(AT_FDCWD, Str(info, 0).c_str(), times, 0) != 0) return FailWith(info, 5, errno, "utimensat");
  return Napi::Boolean::New(info.Env(), true);
}

// fallocate(fd, mode, offset, length, ctx) -> true
Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  if (fallocate(static_cast<int>(I64(info, 0)), static_cast<int>(I64(info, 1)), I64(info, 2), I64(info, 3)) != 0)
    return FailWith(info, 4, errno, "fallocate");
  return Napi::Boolean::New(info.Env(), true);
}

// lseek(fd, offset, whence, ctx) -> offset
Napi::Value Lseek(const Napi::CallbackInfo& info) {
  off_t r = lseek(static_cast<int>(I64(info, 0)), I64(info, 1), static_cast<int>(I64(info, 2)));
  if (r < 0) return FailWith(info, 3, errno, "lseek");
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

// copyFileRange(fdIn, offIn, fdOut, offOut, len, ctx) -> bytes copied
Napi::Value CopyFileRange(const Napi::CallbackInfo& info) {
  loff_t in = I64(info, 1), out = I64(info, 3);
  ssize_t n = copy_file_range(static_cast<int>(I64(info, 0)), &in, static_cast<int>(I64(info, 2)), &out, static_cast<size_t>(I64(info, 4)), 0);
  if (n < 0) return FailWith(info, 5, errno, "copy_file_range");
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

// getxattr(path, name, ctx) -> Buffer
Napi::Value Getxattr(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0), name = Str(info, 1);
  for (;;) {
    ssize_t size = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) return FailWith(info, 2, errno, "getxattr");
    std::vector<char> buf(static_cast<size_t>(size));
    ssize_t n = lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
    if (n < 0 && errno == ERANGE) continue;  // it grew meanwhile
    if (n < 0) return FailWith(info, 2, errno, "getxattr");
    return Napi::Buffer<char>::Copy(info.Env(), buf.data(), static_cast<size_t>(n));
  }
}

// listxattr(path, ctx) -> Buffer of NUL-terminated names
Napi::Value Listxattr(const Napi::CallbackInfo& info) {
  std::string path = Str(info, 0);
  for (;;) {
    ssize_t size = llistxattr(path.c_str(), nullptr, 0);
    if (size < 0) return FailWith(info, 1, errno, "listxattr");
    std::vector<char> buf(static_cast<size_t>(size));
    ssize_t n = llistxattr(path.c_str(), buf.data(), buf.size());
    if (n < 0 && errno == ERANGE) continue;
    if (n < 0) return FailWith(info, 1, errno, "listxattr");
    return Napi::Buffer<char>::Copy(info.Env(), buf.data(), static_cast<size_t>(n));
  }
}

// setxattr(path, name, value, flags, ctx) -> true
Napi::Value Setxattr(const Napi::CallbackInfo& info) {
  Napi::Buffer<char> v = info[2].As<Napi::Buffer<char>>();
  if (lsetxattr(Str(info, 0).c_str(), Str(info, 1).c_str(), v.Data(), v.Length(), static_cast<int>(I64(info, 3))) != 0)
    return FailWith(info, 4, errno, "setxattr");
  return Napi::Boolean::New(info.Env(), true);
}

// removexattr(path, name, ctx) -> true
Napi::Value Removexattr(const Napi::CallbackInfo& info) {
  if (lremovexattr(Str(info, 0).c_str(), Str(info, 1).c_str()) != 0) return FailWith(info, 2, errno, "removexattr");
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace pj

namespace pj {

// pollNow(fd, events, ctx) -> revents : poll(2) with a zero timeout, never waiting.
Napi::Value PollNow(const Napi::CallbackInfo& info) {
  struct pollfd p{};
  p.fd = static_cast<int>(info[0].As<Napi::Number>().Int32Value());
  p.events = static_cast<short>(info[1].As<Napi::Number>().Int32Value());
  if (poll(&p, 1, 0) < 0) return FailWith(info, 2, errno, "poll");
  return Napi::Number::New(info.Env(), p.revents);
}

}  // namespace pj
