// The pager: fills the memory of restored tasks through their userfaultfds,
// received as CRIU's own lazy-pages daemon receives them: CRIU's restore
// connects to a unix socket and sends, per task, its pid as an int and then its
// userfaultfd by SCM_RIGHTS (a negative pid is a zombie, with no fd).
// JavaScript supplies pages (pagerSupply), or says where the page store holds
// them (pagerSupplyStored: the thread reads and checks them itself, so that a
// fault on such a page never waits for JavaScript); one native thread serves
// faults first, then installs pages in the background in contiguous runs.
// A fault on a page not supplied yet is passed to JavaScript, which fetches it
// and supplies it; the thread installs it the moment it arrives.
// See userfaultfd(2), ioctl_userfaultfd(2), criu/uffd.c.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "error-context.h"
#include "page-hash.h"
#include "unix-listen.h"

namespace pj {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kRunPages = 256;  // pages per background UFFDIO_COPY at most
constexpr size_t kStoreRecord = kHashBytes + kPage;  // a page store record: hash, then page (mem-layer/page-store.ts)

uint64_t NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000ull + static_cast<uint64_t>(t.tv_nsec);
}

struct Task {
  int pid;
  int uffd;
  // Supplied, not yet installed: address -> index of its page in `data` (4 KiB each); the pages
  // `held` are installed only when faulted (to measure fault service, or to keep memory cold).
  std::map<uint64_t, size_t> waiting;
  std::map<uint64_t, size_t> held;
  std::vector<uint8_t> data;
  std::vector<bool> remote;  // by slot: the page came from another host (for the fault service figures)
  struct Stored { int fd; uint64_t offset; uint8_t hash[kHashBytes]; };
  std::map<uint64_t, Stored> stored;  // address -> its record in the page store, not read yet
  std::unordered_map<uint64_t, uint64_t> faulted;  // address -> when its fault was read (ns), until installed
  uint64_t installed = 0;
};

// kind: 0 task arrived, 1 fault on a page not supplied, 2 task gone, 3 a stored page did not match its hash
struct Event { int kind; int pid; uint64_t addr; };
enum { kTask = 0, kFault = 1, kGone = 2, kStoreMiss = 3 };

class Pager {
 public:
  // cpu >= 0: the thread runs on that CPU only (a fault is served fastest on the faulting task's CPU).
  Pager(int listenFd, Napi::ThreadSafeFunction onEvent, int cpu) : listen_(listenFd), wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), onEvent_(std::move(onEvent)) {
    thread_ = std::thread([this] { Run(); });
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      pthread_setaffinity_np(thread_.native_handle(), sizeof set, &set);
    }
  }

  ~Pager() {
    stop_ = true;
    Wake();
    thread_.join();
    onEvent_.Release();
    for (auto& [pid, t] : tasks_) close(t->uffd);
    for (int c : clients_) close(c);
    close(listen_);
    close(wake_);
  }

  // Pages for a task (addresses u64 LE, data 4 KiB each); copied, installed by the thread.
  void Supply(int pid, const uint64_t* addrs, size_t count, const uint8_t* data, bool background, bool remote) {
    std::lock_guard<std::mutex> g(mu_);
    Task* t = Find(pid);
    if (!t) {
      auto& pending = early_[pid];
      for (size_t i = 0; i < count; i++) pending.push_back({addrs[i], background, remote, std::vector<uint8_t>(data + i * kPage, data + (i + 1) * kPage)});
    } else {
      for (size_t i = 0; i < count; i++) Add(t, addrs[i], data + i * kPage, background, remote);
    }
    Wake();
  }

  // Pages of a known task that the page store holds: per page its file, record offset and hash.
  // False when the task has not arrived (the caller supplies the data instead).
  bool SupplyStored(int pid, const uint64_t* addrs, size_t count, const int32_t* fds, const uint64_t* offsets, const uint8_t* hashes) {
    std::lock_guard<std::mutex> g(mu_);
    Task* t = Find(pid);
    if (!t) return false;
    for (size_t i = 0; i < count; i++) {
      if (t->waiting.count(addrs[i]) || t->held.count(addrs[i])) continue;
      Task::Stored& s = t->stored[addrs[i]];
      s.fd = fds[i];
      s.offset = offsets[i];
      memcpy(s.hash, hashes + i * kHashBytes, kHashBytes);
    }
    Wake();
    return true;
  }

  Napi::Object Stats(Napi::Env env) {
    std::lock_guard<std::mutex> g(mu_);
    Napi::Object o = Napi::Object::New(env);
    uint64_t waiting = 0, installed = 0;
    for (auto& [pid, t] : tasks_) {
      waiting += t->waiting.size() + t->held.size() + t->stored.size();
      installed += t->installed;
    }
    auto pct = [](std::vector<uint64_t> s, double p) {
      std::sort(s.begin(), s.end());
      return s.empty() ? 0.0 : static_cast<double>(s[std::min(s.size() - 1, static_cast<size_t>(p * s.size()))]);
    };
    o.Set("tasks", static_cast<double>(tasks_.size()));
    o.Set("waiting", static_cast<double>(waiting));
    o.Set("installed", static_cast<double>(installed));
    o.Set("faults", static_cast<double>(faults_));
    o.Set("faultsOnSupplied", static_cast<double>(faultsOnSupplied_));
    o.Set("faultsHanded", static_cast<double>(handedNs_.size()));
    o.Set("faultsFetched", static_cast<double>(fetchedNs_.size()));
    o.Set("localP50Ns", pct(localNs_, 0.5));
    o.Set("localP99Ns", pct(localNs_, 0.99));
    o.Set("handedP50Ns", pct(handedNs_, 0.5));
    o.Set("handedP99Ns", pct(handedNs_, 0.99));
    o.Set("fetchedP50Ns", pct(fetchedNs_, 0.5));
    o.Set("fetchedP99Ns", pct(fetchedNs_, 0.99));
    return o;
  }

 private:
  Task* Find(int pid) {
    auto it = tasks_.find(pid);
    return it == tasks_.end() ? nullptr : it->second.get();
  }

  void Add(Task* t, uint64_t addr, const uint8_t* page, bool background, bool remote) {
    if (t->waiting.count(addr) || t->held.count(addr)) return;
    t->stored.erase(addr);  // supplied otherwise meanwhile
    (background ? t->waiting : t->held)[addr] = t->data.size() / kPage;
    t->data.insert(t->data.end(), page, page + kPage);
    t->remote.push_back(remote);
  }

  void Wake() {
    uint64_t one = 1;
    (void)!write(wake_, &one, sizeof one);
  }

  void Emit(int kind, int pid, uint64_t addr) {
    auto* e = new Event{kind, pid, addr};
    onEvent_.NonBlockingCall(e, [](Napi::Env env, Napi::Function fn, Event* ev) {
      fn.Call({Napi::Number::New(env, ev->kind), Napi::Number::New(env, ev->pid), Napi::Number::New(env, static_cast<double>(ev->addr))});
      delete ev;
    });
  }

  // Installs `n` supplied pages of `t` starting at `addr` (contiguous in both address and data).
  // Returns false when the task is gone. A run the kernel cannot fill whole (a page there already,
  // a page no longer mapped) is done again page by page.
  bool Copy(Task* t, std::map<uint64_t, size_t>& from, uint64_t addr, size_t n) {
    uffdio_copy c{};
    c.dst = addr;
    c.src = reinterpret_cast<uint64_t>(t->data.data() + from[addr] * kPage);
    c.len = n * kPage;
    if (ioctl(t->uffd, UFFDIO_COPY, &c) != 0) {
      if (errno == ESRCH || errno == EBADF) return false;
      if (n > 1) {
        for (size_t i = 0; i < n; i++)
          if (!Copy(t, from, addr + i * kPage, 1)) return false;
        return true;
      }
      if (errno == EAGAIN) return true;  // the address space is changing: it stays waiting
      // EEXIST: the page is there already; ENOENT, EFAULT: nothing is mapped there to fill.
    }
    uint64_t now = NowNs();
    for (size_t i = 0; i < n; i++) {
      uint64_t a = addr + i * kPage;
      auto slot = from.find(a);
      bool remote = t->remote[slot->second];
      from.erase(slot);
      t->installed++;
      auto f = t->faulted.find(a);
      if (f != t->faulted.end()) {
        (remote ? fetchedNs_ : handedNs_).push_back(now - f->second);
        t->faulted.erase(f);
      }
    }
    if (t->waiting.empty() && t->held.empty()) {  // every supplied page is in: free them
      std::vector<uint8_t>().swap(t->data);
      std::vector<bool>().swap(t->remote);
    }
    return true;
  }

  // Reads up to `most` stored pages from `addr` (contiguous in memory and in one file) at once and
  // moves those that match their hash to `waiting`; one that does not is reported (kStoreMiss).
  void Load(Task* t, uint64_t addr, size_t most) {
    auto first = t->stored.find(addr);
    const Task::Stored head = first->second;
    size_t n = 1;
    for (auto it = std::next(first); n < most && it != t->stored.end(); ++it, ++n)
      if (it->first != addr + n * kPage || it->second.fd != head.fd || it->second.offset != head.offset + n * kStoreRecord) break;
    std::vector<uint8_t> records(n * kStoreRecord);
    ssize_t got = pread(head.fd, records.data(), records.size(), static_cast<off_t>(head.offset));
    size_t whole = got > 0 ? static_cast<size_t>(got) / kStoreRecord : 0;
    for (size_t i = 0; i < n; i++) {
      uint64_t a = addr + i * kPage;
      auto s = t->stored.find(a);
      uint8_t want[kHashBytes];
      memcpy(want, s->second.hash, kHashBytes);
      t->stored.erase(s);
      const uint8_t* page = records.data() + i * kStoreRecord + kHashBytes;
      uint8_t h[kHashBytes];
      if (i < whole) HashPage(page, kPage, h);
      if (i < whole && memcmp(h, want, kHashBytes) == 0) Add(t, a, page, true, false);
      else Emit(kStoreMiss, t->pid, a);
    }
  }

  void ReadFaults(Task* t) {
    uffd_msg msg[16];
    for (;;) {
      ssize_t n = read(t->uffd, msg, sizeof msg);
      if (n <= 0) return;
      uint64_t now = NowNs();
      std::lock_guard<std::mutex> g(mu_);
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); i++) {
        if (msg[i].event != UFFD_EVENT_PAGEFAULT) continue;
        uint64_t addr = msg[i].arg.pagefault.address & ~(kPage - 1);
        faults_++;
        if (t->stored.count(addr)) Load(t, addr, 1);  // in this host's store: read here, no JavaScript involved
        auto& from = t->held.count(addr) ? t->held : t->waiting;
        if (from.count(addr)) {
          faultsOnSupplied_++;
          Copy(t, from, addr, 1);
          localNs_.push_back(NowNs() - now);
        } else {  // not here yet (or its stored copy was damaged): JavaScript gets it
          t->faulted.emplace(addr, now);
          Emit(kFault, t->pid, addr);
        }
      }
    }
  }

  void Accept() {
    int c = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) clients_.push_back(c);
  }

  // One record from CRIU's restore: an int pid, then (pid > 0) the uffd by SCM_RIGHTS.
  bool ReadClient(int c) {
    int pid;
    if (recv(c, &pid, sizeof pid, MSG_WAITALL) != sizeof pid) return false;
    if (pid < 0) return true;  // a zombie: no memory to fill
    char byte;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    if (recvmsg(c, &m, MSG_CMSG_CLOEXEC) <= 0) return false;
    cmsghdr* h = CMSG_FIRSTHDR(&m);
    if (!h || h->cmsg_type != SCM_RIGHTS) return false;
    int uffd;
    memcpy(&uffd, CMSG_DATA(h), sizeof uffd);
    fcntl(uffd, F_SETFL, fcntl(uffd, F_GETFL) | O_NONBLOCK);
    {
      std::lock_guard<std::mutex> g(mu_);
      auto t = std::make_unique<Task>();
      t->pid = pid;
      t->uffd = uffd;
      for (auto& e : early_[pid]) Add(t.get(), e.addr, e.page.data(), e.background, e.remote);
      early_.erase(pid);
      tasks_[pid] = std::move(t);
    }
    Emit(kTask, pid, 0);
    return true;
  }

  // Installs one contiguous run of waiting pages (or reads a run of stored ones); false when there is none.
  bool InstallSome() {
    std::lock_guard<std::mutex> g(mu_);
    for (auto it = tasks_.begin(); it != tasks_.end(); ++it) {
      Task* t = it->second.get();
      if (t->waiting.empty() && !t->stored.empty()) {
        Load(t, t->stored.begin()->first, kRunPages);
        return true;
      }
      if (t->waiting.empty()) continue;
      auto first = t->waiting.begin();
      uint64_t addr = first->first;
      size_t slot = first->second, n = 1;
      for (auto next = std::next(first); next != t->waiting.end() && n < kRunPages; ++next, ++n)
        if (next->first != addr + n * kPage || next->second != slot + n) break;
      if (!Copy(t, t->waiting, addr, n)) {
        Emit(kGone, t->pid, 0);
        close(t->uffd);
        tasks_.erase(it);
      }
      return true;
    }
    return false;
  }

  void Run() {
    std::vector<pollfd> fds;
    bool busy = false;
    while (!stop_) {
      fds.clear();
      fds.push_back({wake_, POLLIN, 0});
      fds.push_back({listen_, POLLIN, 0});
      for (int c : clients_) fds.push_back({c, POLLIN, 0});
      std::vector<Task*> order;
      {
        std::lock_guard<std::mutex> g(mu_);
        for (auto& [pid, t] : tasks_) {
          fds.push_back({t->uffd, POLLIN, 0});
          order.push_back(t.get());
        }
      }
      if (poll(fds.data(), fds.size(), busy ? 0 : 1000) < 0 && errno != EINTR) break;
      if (fds[0].revents) {
        uint64_t v;
        (void)!read(wake_, &v, sizeof v);
      }
      if (fds[1].revents & POLLIN) Accept();
      size_t at = 2;
      std::vector<int> closed;
      for (int c : clients_) {
        if (fds[at++].revents & (POLLIN | POLLHUP) && !ReadClient(c)) closed.push_back(c);
      }
      for (int c : closed) {
        close(c);
        clients_.erase(std::remove(clients_.begin(), clients_.end(), c), clients_.end());
      }
      for (Task* t : order) if (fds[at++].revents & POLLIN) ReadFaults(t);  // faults first
      busy = InstallSome();
    }
  }

  int listen_;
  int wake_;
  Napi::ThreadSafeFunction onEvent_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<int, std::unique_ptr<Task>> tasks_;
  struct Early { uint64_t addr; bool background; bool remote; std::vector<uint8_t> page; };
  std::map<int, std::vector<Early>> early_;  // pages supplied before their task arrived
  std::vector<int> clients_;
  // Fault service times: the pager had the page (supplied, or its place in the store); the page came
  // from this host after the fault reached JavaScript; it was fetched from another host.
  std::vector<uint64_t> localNs_;
  std::vector<uint64_t> handedNs_;
  std::vector<uint64_t> fetchedNs_;
  uint64_t faults_ = 0;
  uint64_t faultsOnSupplied_ = 0;
};

std::map<int, std::unique_ptr<Pager>> pagers;
int nextPager = 1;

Pager* PagerOf(const Napi::CallbackInfo& info) {
  auto it = pagers.find(info[0].As<Napi::Number>().Int32Value());
  if (it == pagers.end()) {
    Napi::TypeError::New(info.Env(), "no such pager").ThrowAsJavaScriptException();
    return nullptr;
  }
  return it->second.get();
}

}  // namespace

// pagerStart(socketPath, onEvent(kind, pid, addr), ctx, cpu) -> handle: listens on socketPath (as
// CRIU's lazy-pages daemon does) and starts the pager's thread. Events: 0 a task arrived,
// 1 a fault on a page not supplied (fetch it, then pagerSupply), 2 a task is gone. cpu >= 0 pins its thread.
Napi::Value PagerStart(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int err = 0;
  const char* syscall = "";
  int fd = ListenUnix(path, SOCK_STREAM, 8, err, syscall);
  if (fd < 0) return FailWith(info, 2, err, syscall);
  auto tsfn = Napi::ThreadSafeFunction::New(info.Env(), info[1].As<Napi::Function>(), "pj-pager", 0, 1);
  int id = nextPager++;
  int cpu = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : -1;
  pagers[id] = std::make_unique<Pager>(fd, std::move(tsfn), cpu);
  return Napi::Number::New(info.Env(), id);
}

// pagerSupply(handle, pid, addrs: Buffer (u64 LE), data: Buffer (4 KiB per address), background, remote) -> true
// background false: installed only when faulted. remote: the pages came from another host (fault figures).
Napi::Value PagerSupply(const Napi::CallbackInfo& info) {
  Pager* p = PagerOf(info);
  if (!p) return info.Env().Undefined();
  Napi::Buffer<uint8_t> a = info[2].As<Napi::Buffer<uint8_t>>();
  Napi::Buffer<uint8_t> d = info[3].As<Napi::Buffer<uint8_t>>();
  size_t count = std::min(a.Length() / sizeof(uint64_t), d.Length() / kPage);
  std::vector<uint64_t> addrs(count);
  memcpy(addrs.data(), a.Data(), count * sizeof(uint64_t));
  p->Supply(info[1].As<Napi::Number>().Int32Value(), addrs.data(), count, d.Data(), info[4].ToBoolean().Value(), info[5].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), true);
}

// pagerSupplyStored(handle, pid, addrs: Buffer (u64 LE), fds: Buffer (i32), offsets: Buffer (u64 LE),
// hashes: Buffer (16 bytes each)) -> whether the task is known. The pages are in the page store's
// files at those record offsets; the thread reads them, checks each against its hash, installs it.
Napi::Value PagerSupplyStored(const Napi::CallbackInfo& info) {
  Pager* p = PagerOf(info);
  if (!p) return info.Env().Undefined();
  auto bytes = [&](int i) { return info[i].As<Napi::Buffer<uint8_t>>(); };
  size_t count = bytes(2).Length() / sizeof(uint64_t);
  if (bytes(3).Length() < count * sizeof(int32_t) || bytes(4).Length() < count * sizeof(uint64_t) || bytes(5).Length() < count * kHashBytes) {
    Napi::TypeError::New(info.Env(), "pagerSupplyStored: fds, offsets and hashes must match the addresses").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  std::vector<uint64_t> addrs(count), offsets(count);
  std::vector<int32_t> fds(count);
  memcpy(addrs.data(), bytes(2).Data(), count * sizeof(uint64_t));
  memcpy(fds.data(), bytes(3).Data(), count * sizeof(int32_t));
  memcpy(offsets.data(), bytes(4).Data(), count * sizeof(uint64_t));
  return Napi::Boolean::New(info.Env(), p->SupplyStored(info[1].As<Napi::Number>().Int32Value(), addrs.data(), count, fds.data(), offsets.data(), bytes(5).Data()));
}

// pagerStats(handle) -> { tasks, waiting, installed, faults, faultsOnSupplied, faultsHanded, faultsFetched,
//   localP50Ns, localP99Ns, handedP50Ns, handedP99Ns, fetchedP50Ns, fetchedP99Ns }
Napi::Value PagerStats(const Napi::CallbackInfo& info) {
  Pager* p = PagerOf(info);
  return p ? p->Stats(info.Env()) : info.Env().Undefined();
}

// pagerStop(handle): ends the thread and closes every userfaultfd.
Napi::Value PagerStop(const Napi::CallbackInfo& info) {
  Pager* p = PagerOf(info);
  if (p) pagers.erase(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

}  // namespace pj
