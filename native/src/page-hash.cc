// A process's memory by content, for the mem-layer: which pages are present
// (/proc/<pid>/pagemap), what they hold (process_vm_readv, in 2 MiB batches)
// and their XXH3-128 hashes. Scans run on a worker thread: a GiB takes long
// enough that the agent's event loop must not wait for it.
#include <fcntl.h>
#include <sched.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <vector>

#include "error-context.h"
#include "page-hash.h"

namespace pj {
namespace {

constexpr size_t kPage = 4096;
constexpr uint64_t kPresent = 1ULL << 63;
constexpr uint64_t kSwapped = 1ULL << 62;  // also a page under migration: read, as CRIU dumps it
constexpr size_t kBatchPages = 512;
constexpr size_t kMaxIov = 1024;

void PutHash(const uint8_t* page, std::vector<uint8_t>& out) {
  uint8_t h[kHashBytes];
  HashPage(page, kPage, h);
  out.insert(out.end(), h, h + kHashBytes);
}

// Reads the pages at `addrs` (page-aligned) of `pid` into `buf`; returns how many were read in
// full (a page unmapped meanwhile ends the read there), or -1 with errno set.
ssize_t ReadPages(int pid, const uint64_t* addrs, size_t count, uint8_t* buf) {
  std::vector<iovec> remote;
  for (size_t i = 0; i < count; i++) {
    void* a = reinterpret_cast<void*>(addrs[i]);
    if (!remote.empty() && static_cast<uint8_t*>(remote.back().iov_base) + remote.back().iov_len == a) remote.back().iov_len += kPage;
    else remote.push_back({a, kPage});
  }
  size_t done = 0;
  for (size_t r = 0; r < remote.size(); r += kMaxIov) {
    size_t n = std::min(kMaxIov, remote.size() - r);
    size_t want = 0;
    for (size_t k = 0; k < n; k++) want += remote[r + k].iov_len;
    iovec local{buf + done, want};
    ssize_t got = process_vm_readv(pid, &local, 1, &remote[r], n, 0);
    if (got < 0) return done ? static_cast<ssize_t>(done / kPage) : -1;
    done += static_cast<size_t>(got);
    if (static_cast<size_t>(got) != want) break;
  }
  return static_cast<ssize_t>(done / kPage);
}

class ScanWorker : public Napi::AsyncWorker {
 public:
  ScanWorker(Napi::Env env, int pid, std::vector<uint64_t> ranges, bool idle)
      : Napi::AsyncWorker(env), pid_(pid), ranges_(std::move(ranges)), idle_(idle), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // idle: this (pool) thread yields to any other work while it scans, and gets its class back after.
    sched_param none{};
    if (idle_) sched_setscheduler(0, SCHED_IDLE, &none);
    Scan();
    if (idle_) sched_setscheduler(0, SCHED_OTHER, &none);
  }

  void Scan() {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/pagemap", pid_);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Fail(errno, "open");
    std::vector<uint64_t> map(kBatchPages);
    std::vector<uint64_t> present;
    std::vector<uint8_t> buf(kBatchPages * kPage);
    for (size_t r = 0; r + 1 < ranges_.size(); r += 2) {
      for (uint64_t at = ranges_[r]; at < ranges_[r + 1]; at += kBatchPages * kPage) {
        size_t n = std::min<uint64_t>(kBatchPages, (ranges_[r + 1] - at) / kPage);
        ssize_t got = pread(fd, map.data(), n * sizeof(uint64_t), static_cast<off_t>(at / kPage * sizeof(uint64_t)));
        if (got < 0) {
          close(fd);
          return Fail(errno, "pread");
        }
        present.clear();
        for (size_t i = 0; i < static_cast<size_t>(got) / sizeof(uint64_t); i++)
          if (map[i] & (kPresent | kSwapped)) present.push_back(at + i * kPage);
        if (present.empty()) continue;
        ssize_t read = ReadPages(pid_, present.data(), present.size(), buf.data());
        if (read < 0) {
          close(fd);
          return Fail(errno, "process_vm_readv");
        }
        for (ssize_t i = 0; i < read; i++) {
          const uint8_t* a = reinterpret_cast<const uint8_t*>(&present[i]);
          addrs_.insert(addrs_.end(), a, a + sizeof(uint64_t));
          PutHash(buf.data() + i * kPage, hashes_);
        }
      }
    }
    close(fd);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    if (err_) {
      out.Set("errno", Napi::Number::New(env, err_));
      out.Set("syscall", Napi::String::New(env, syscall_));
    } else {
      out.Set("addrs", Napi::Buffer<uint8_t>::Copy(env, addrs_.data(), addrs_.size()));
      out.Set("hashes", Napi::Buffer<uint8_t>::Copy(env, hashes_.data(), hashes_.size()));
    }
    deferred_.Resolve(out);
  }

 private:
  void Fail(int err, const char* syscall) {
    err_ = err;
    syscall_ = syscall;
  }

  int pid_;
  std::vector<uint64_t> ranges_;
  bool idle_;
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> addrs_;
  std::vector<uint8_t> hashes_;
  int err_ = 0;
  const char* syscall_ = "";
};

// Reads pages of a running process on a pool thread: process_vm_readv waits for the process's exec
// lock, which a process in execve holds while it waits for this agent's answer on /pj.
class ReadWorker : public Napi::AsyncWorker {
 public:
  ReadWorker(Napi::Env env, int pid, std::vector<uint64_t> addrs)
      : Napi::AsyncWorker(env), pid_(pid), addrs_(std::move(addrs)), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    buf_.resize(addrs_.size() * kPage);
    read_ = ReadPages(pid_, addrs_.data(), addrs_.size(), buf_.data());
    if (read_ < 0) err_ = errno;
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (read_ < 0) {
      Napi::Object out = Napi::Object::New(env);
      out.Set("errno", Napi::Number::New(env, err_));
      out.Set("syscall", Napi::String::New(env, "process_vm_readv"));
      return deferred_.Resolve(out);
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, buf_.data(), static_cast<size_t>(read_) * kPage));
  }

 private:
  int pid_;
  std::vector<uint64_t> addrs_;
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> buf_;
  ssize_t read_ = 0;
  int err_ = 0;
};

std::vector<uint64_t> AddrsOf(const Napi::Value& v) {
  Napi::Buffer<uint8_t> a = v.As<Napi::Buffer<uint8_t>>();
  std::vector<uint64_t> addrs(a.Length() / sizeof(uint64_t));
  std::copy_n(a.Data(), addrs.size() * sizeof(uint64_t), reinterpret_cast<uint8_t*>(addrs.data()));
  return addrs;
}

}  // namespace

// pageScan(pid, ranges: number[] [start, end, start, end…] page-aligned, idle) ->
//   Promise<{ addrs: Buffer (u64 LE each), hashes: Buffer (16 bytes each) } | { errno, syscall }>
// The present (or swapped: CRIU dumps those too) pages of the ranges, in address order, with their XXH3-128 hashes (canonical form).
// idle: the scan runs at SCHED_IDLE, taking no CPU that other work wants.
Napi::Value PageScan(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "pid")) return info.Env().Undefined();
  Napi::Array list = info[1].As<Napi::Array>();
  std::vector<uint64_t> ranges(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) ranges[i] = static_cast<uint64_t>(list.Get(i).As<Napi::Number>().DoubleValue());
  auto* w = new ScanWorker(info.Env(), info[0].As<Napi::Number>().Int32Value(), std::move(ranges), info.Length() > 2 && info[2].ToBoolean().Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// readPages(pid, addrs: Buffer (u64 LE each), ctx) -> Buffer of 4 KiB per page read (a page
// unmapped meanwhile ends it early).
Napi::Value ReadPagesOf(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "pid")) return info.Env().Undefined();
  std::vector<uint64_t> addrs = AddrsOf(info[1]);
  std::vector<uint8_t> buf(addrs.size() * kPage);
  ssize_t read = ReadPages(info[0].As<Napi::Number>().Int32Value(), addrs.data(), addrs.size(), buf.data());
  if (read < 0) return FailWith(info, 2, errno, "process_vm_readv");
  return Napi::Buffer<uint8_t>::Copy(info.Env(), buf.data(), static_cast<size_t>(read) * kPage);
}

// readPagesAsync(pid, addrs) -> Promise<Buffer | { errno, syscall }>: readPages on a pool thread,
// for a process that runs (and may be in execve).
Napi::Value ReadPagesAsync(const Napi::CallbackInfo& info) {
  if (!RequireInt(info, 0, "pid")) return info.Env().Undefined();
  auto* w = new ReadWorker(info.Env(), info[0].As<Napi::Number>().Int32Value(), AddrsOf(info[1]));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// hashPages(data: Buffer, a multiple of 4 KiB) -> Buffer of 16-byte XXH3-128 hashes, one per page.
Napi::Value HashPages(const Napi::CallbackInfo& info) {
  Napi::Buffer<uint8_t> data = info[0].As<Napi::Buffer<uint8_t>>();
  std::vector<uint8_t> out;
  out.reserve(data.Length() / kPage * 16);
  for (size_t off = 0; off + kPage <= data.Length(); off += kPage) PutHash(data.Data() + off, out);
  return Napi::Buffer<uint8_t>::Copy(info.Env(), out.data(), out.size());
}

}  // namespace pj
