// A listening unix socket at a path (a stale socket file there is replaced), for
// the channels whose peers find us by path: CRIU's lazy-pages.socket, the jobs' net.sock.
#pragma once
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <string>

namespace pj {

// The listening fd, or -1 with `err` and `syscall` set.
inline int ListenUnix(const std::string& path, int type, int backlog, int& err, const char*& syscall) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) { err = ENAMETOOLONG; syscall = "bind"; return -1; }
  memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) { err = errno; syscall = "socket"; return -1; }
  unlink(path.c_str());
  if (bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0 || listen(fd, backlog) != 0) {
    err = errno;
    syscall = "bind";
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace pj
