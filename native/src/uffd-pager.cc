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
// The task runs meanwhile, and CRIU asks for userfaultfd's non-cooperative
// events: a child it forks gets a userfaultfd of its own (served like its
// parent, with the same pages), memory it moves with mremap is followed, and
// memory it unmaps or drops (MADV_DONTNEED) gets nothing of the image any more.
// Each userfaultfd and each change to a task's memory is told to the job's
// keeper (native/pager-keeper): when this agent dies the job waits for its
// pages instead of reading zeros, and the next agent's pager adopts the tasks
// from the keeper and serves on (a page already there is not filled again).
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

#include "../common/fd-message.h"
#include "../pager-keeper/keep-msg.h"
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

// Pages supplied together share one buffer, so that a forked task's copy of what its parent still
// waits for shares the data.
using Block = std::shared_ptr<const std::vector<uint8_t>>;
struct Page {
  Block block;
  uint32_t index;  // its 4 KiB in the block
  bool remote;     // it came from another host (for the fault service figures)
  const uint8_t* data() const { return block->data() + static_cast<size_t>(index) * kPage; }
};

constexpr uint64_t kDropped = ~0ull;

// A change to a task's memory since its restore (userfaultfd's non-cooperative events): a range
// moved by mremap to `to`, or dropped (to == kDropped) by munmap or MADV_DONTNEED.
struct Change { uint64_t from, len, to; };

struct Task {
  uint32_t id;  // as the keeper knows it
  int pid;  // as CRIU restored it; a task forked since has its ancestor's (JavaScript supplies them alike)
  int uffd;
  // Supplied, not yet installed, by where the page is now; the pages `held` are installed only
  // when faulted (to measure fault service, or to keep memory cold).
  std::map<uint64_t, Page> waiting;
  std::map<uint64_t, Page> held;
  struct Stored { int fd; uint64_t offset; uint8_t hash[kHashBytes]; };
  std::map<uint64_t, Stored> stored;  // where the page is now -> its record in the page store, not read yet
  std::unordered_map<uint64_t, uint64_t> faulted;  // address -> when its fault was read (ns), until installed
  // JavaScript names pages by their address in the images: the changes, in order, say where each is now.
  std::vector<Change> changes;
  uint64_t installed = 0;  // or dropped: no longer to install
};

// Where the image's page at `addr` is now, or kDropped.
uint64_t Current(const Task& t, uint64_t addr) {
  for (const Change& c : t.changes) {
    if (addr - c.from >= c.len) continue;
    if (c.to == kDropped) return kDropped;
    addr = addr - c.from + c.to;
  }
  return addr;
}

// The image's address of the page now at `addr`, or kDropped when it did not come from the image.
uint64_t Original(const Task& t, uint64_t addr) {
  for (auto c = t.changes.rbegin(); c != t.changes.rend(); ++c) {
    if (c->to == kDropped) {
      if (addr - c->from < c->len) return kDropped;
    } else if (addr - c->to < c->len) {
      addr = addr - c->to + c->from;
    }
  }
  return addr;
}

// kind: 0 task arrived, 1 fault on a page not supplied, 2 task gone, 3 a stored page did not match its hash,
// 4 the keeper does not answer (the job is no longer safe from this agent's death)
struct Event { int kind; int pid; uint64_t addr; };
enum { kTask = 0, kFault = 1, kGone = 2, kStoreMiss = 3, kKeeperLost = 4 };

// One message to the keeper (keep-msg.h), with a descriptor or -1.
bool SendKeep(int sock, const pj_keep_msg& m, int fd) {
  return pj_send_fd(sock, &m, sizeof m, fd, 0) == static_cast<ssize_t>(sizeof m);
}

// Connected to the keeper listening at `path` (seqpacket), or -1 with errno set.
int ConnectKeeper(const std::string& path) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

// The tasks a keeper holds, with their changes (ADOPT); false with errno set when it does not answer in 5 s.
bool AdoptFrom(int keeper, std::vector<std::unique_ptr<Task>>& out) {
  timeval limit{5, 0};
  setsockopt(keeper, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  pj_keep_msg ask{};
  ask.type = PJ_KEEP_ADOPT;
  if (!SendKeep(keeper, ask, -1)) return false;
  for (;;) {
    pj_keep_msg m;
    int fd;
    ssize_t n = pj_recv_fd(keeper, &m, sizeof m, &fd, 0);
    if (n != static_cast<ssize_t>(sizeof m)) {
      if (fd >= 0) close(fd);
      if (n >= 0) errno = EPROTO;
      return false;
    }
    if (m.type == PJ_KEEP_END) break;
    if (m.type == PJ_KEEP_TASK && fd >= 0) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      auto t = std::make_unique<Task>();
      t->id = m.task;
      t->pid = m.pid;
      t->uffd = fd;
      out.push_back(std::move(t));
    } else if (m.type == PJ_KEEP_CHANGE && !out.empty() && out.back()->id == m.task) {
      out.back()->changes.push_back({m.from, m.len, m.to == PJ_KEEP_DROPPED ? kDropped : m.to});
    } else if (fd >= 0) {
      close(fd);
    }
  }
  timeval none{0, 0};
  setsockopt(keeper, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  return true;
}

class Pager {
 public:
  // cpu >= 0: the thread runs on that CPU only (a fault is served fastest on the faulting task's CPU).
  // listenFd: CRIU's lazy-pages socket (-1 when adopting); keeper: the connection to the job's
  // keeper (-1: none); adopted: the tasks a keeper handed over, served as if they had just arrived.
  Pager(int listenFd, int keeper, std::vector<std::unique_ptr<Task>> adopted, Napi::ThreadSafeFunction onEvent, int cpu)
      : listen_(listenFd), keeper_(keeper), wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), onEvent_(std::move(onEvent)) {
    std::vector<int> pids;
    for (auto& t : adopted) {
      nextId_ = std::max(nextId_, t->id + 1);
      // A fault the dead pager read and never answered waits still: it faults again, to us.
      WakeAll(t.get());
      if (std::find(pids.begin(), pids.end(), t->pid) == pids.end()) pids.push_back(t->pid);
      int fd = t->uffd;
      tasks_[fd] = std::move(t);
    }
    for (int pid : pids) Emit(kTask, pid, 0);
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
    for (auto& [fd, t] : tasks_) close(fd);
    for (int c : clients_) close(c);
    if (keeper_ >= 0) close(keeper_);
    if (listen_ >= 0) close(listen_);
    close(wake_);
  }

  // Every page is installed, or the copy is ended: the keeper lets the userfaultfds go. (Not on a
  // mere destruction: at the agent's exit the keeper must go on holding them.)
  void Finish() {
    std::lock_guard<std::mutex> g(mu_);
    Keep(PJ_KEEP_DONE, nullptr);
    // Told: what the thread does until it ends (tasks it forgets) is no longer the keeper's.
    if (keeper_ >= 0) close(keeper_);
    keeper_ = -1;
  }

  // Pages for a task and the tasks it forked (addresses in the images, u64 LE; data 4 KiB each);
  // copied, installed by the thread.
  void Supply(int pid, const uint64_t* addrs, size_t count, const uint8_t* data, bool background, bool remote) {
    std::lock_guard<std::mutex> g(mu_);
    Block block = std::make_shared<const std::vector<uint8_t>>(data, data + count * kPage);
    std::vector<Task*> tasks = Of(pid);
    for (size_t i = 0; i < count; i++) {
      Page page{block, static_cast<uint32_t>(i), remote};
      if (tasks.empty()) early_[pid].push_back({addrs[i], background, page});
      for (Task* t : tasks) {
        uint64_t at = Current(*t, addrs[i]);
        if (at == kDropped) t->installed++;
        else Place(t, at, page, background);
      }
    }
    Wake();
  }

  // Pages of a known task that the page store holds: per page its file, record offset and hash.
  // False when the task has not arrived (the caller supplies the data instead).
  bool SupplyStored(int pid, const uint64_t* addrs, size_t count, const int32_t* fds, const uint64_t* offsets, const uint8_t* hashes) {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<Task*> tasks = Of(pid);
    for (Task* t : tasks) {
      for (size_t i = 0; i < count; i++) {
        uint64_t at = Current(*t, addrs[i]);
        if (at == kDropped) {
          t->installed++;
          continue;
        }
        if (t->waiting.count(at) || t->held.count(at)) continue;
        Task::Stored& s = t->stored[at];
        s.fd = fds[i];
        s.offset = offsets[i];
        memcpy(s.hash, hashes + i * kHashBytes, kHashBytes);
      }
    }
    Wake();
    return !tasks.empty();
  }

  Napi::Object Stats(Napi::Env env) {
    std::lock_guard<std::mutex> g(mu_);
    Napi::Object o = Napi::Object::New(env);
    uint64_t waiting = 0, installed = 0;
    for (auto& [fd, t] : tasks_) {
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
    o.Set("forks", static_cast<double>(forks_));
    o.Set("remaps", static_cast<double>(remaps_));
    o.Set("drops", static_cast<double>(drops_));
    o.Set("localP50Ns", pct(localNs_, 0.5));
    o.Set("localP99Ns", pct(localNs_, 0.99));
    o.Set("handedP50Ns", pct(handedNs_, 0.5));
    o.Set("handedP99Ns", pct(handedNs_, 0.99));
    o.Set("fetchedP50Ns", pct(fetchedNs_, 0.5));
    o.Set("fetchedP99Ns", pct(fetchedNs_, 0.99));
    return o;
  }

 private:
  // The task CRIU restored as `pid` and those it forked since.
  std::vector<Task*> Of(int pid) {
    std::vector<Task*> out;
    for (auto& [fd, t] : tasks_)
      if (t->pid == pid) out.push_back(t.get());
    return out;
  }

  // A page for where it is now (`at`), unless one is there already.
  void Place(Task* t, uint64_t at, const Page& page, bool background) {
    if (t->waiting.count(at) || t->held.count(at)) return;
    t->stored.erase(at);  // supplied otherwise meanwhile
    (background ? t->waiting : t->held).emplace(at, page);
  }

  void Wake() {
    uint64_t one = 1;
    (void)!write(wake_, &one, sizeof one);
  }

  // Tells the keeper; once it does not answer, says so once and goes on without it.
  void Keep(uint32_t type, const Task* t, uint32_t parent = 0, uint64_t from = 0, uint64_t len = 0, uint64_t to = 0, int fd = -1) {
    if (keeper_ < 0) return;
    pj_keep_msg m{};
    m.type = type;
    m.task = t ? t->id : 0;
    m.pid = t ? t->pid : 0;
    m.parent = parent;
    m.from = from;
    m.len = len;
    m.to = to == kDropped ? PJ_KEEP_DROPPED : to;
    if (SendKeep(keeper_, m, fd)) return;
    close(keeper_);
    keeper_ = -1;
    if (type != PJ_KEEP_DONE) Emit(kKeeperLost, 0, 0);
  }

  // Wakes every thread of `t` waiting for a page (the range is the whole address space).
  static void WakeAll(Task* t) {
    uffdio_range r{1ull << 16, (1ull << 47) - (1ull << 16) - kPage};
    ioctl(t->uffd, UFFDIO_WAKE, &r);
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
  bool Copy(Task* t, std::map<uint64_t, Page>& from, uint64_t addr, size_t n) {
    uffdio_copy c{};
    c.dst = addr;
    c.src = reinterpret_cast<uint64_t>(from.at(addr).data());
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
      bool remote = slot->second.remote;
      from.erase(slot);
      t->installed++;
      auto f = t->faulted.find(a);
      if (f != t->faulted.end()) {
        (remote ? fetchedNs_ : handedNs_).push_back(now - f->second);
        t->faulted.erase(f);
      }
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
    auto pages = std::make_shared<std::vector<uint8_t>>(n * kPage);
    for (size_t i = 0; i < n; i++) {
      uint64_t a = addr + i * kPage;
      auto s = t->stored.find(a);
      uint8_t want[kHashBytes];
      memcpy(want, s->second.hash, kHashBytes);
      t->stored.erase(s);
      const uint8_t* page = records.data() + i * kStoreRecord + kHashBytes;
      uint8_t h[kHashBytes];
      if (i < whole) HashPage(page, kPage, h);
      if (i < whole && memcmp(h, want, kHashBytes) == 0) {
        memcpy(pages->data() + i * kPage, page, kPage);
        Place(t, a, Page{pages, static_cast<uint32_t>(i), false}, true);
      } else {
        Emit(kStoreMiss, t->pid, Original(*t, a));
      }
    }
  }

  // A fault where nothing of the image belongs any more (dropped since the restore): it reads zero.
  void Zero(Task* t, uint64_t addr) {
    uffdio_zeropage z{};
    z.range.start = addr;
    z.range.len = kPage;
    ioctl(t->uffd, UFFDIO_ZEROPAGE, &z);
  }

  void Fault(Task* t, uint64_t addr, uint64_t now) {
    faults_++;
    if (t->stored.count(addr)) Load(t, addr, 1);  // in this host's store: read here, no JavaScript involved
    auto& from = t->held.count(addr) ? t->held : t->waiting;
    if (from.count(addr)) {
      faultsOnSupplied_++;
      Copy(t, from, addr, 1);
      localNs_.push_back(NowNs() - now);
      return;
    }
    uint64_t original = Original(*t, addr);
    if (original == kDropped) return Zero(t, addr);
    t->faulted.emplace(addr, now);  // not here yet (or its stored copy was damaged): JavaScript gets it
    Emit(kFault, t->pid, original);
  }

  // The task forked: the child (its own userfaultfd) lacks what its parent lacks, and gets the same pages.
  void Fork(Task* parent, int uffd) {
    fcntl(uffd, F_SETFL, fcntl(uffd, F_GETFL) | O_NONBLOCK);
    fcntl(uffd, F_SETFD, FD_CLOEXEC);
    auto child = std::make_unique<Task>(*parent);
    child->uffd = uffd;
    child->id = nextId_++;
    Keep(PJ_KEEP_FORK, child.get(), parent->id, 0, 0, 0, uffd);
    child->faulted.clear();
    child->installed = 0;
    tasks_[uffd] = std::move(child);
    forks_++;
  }

  // Threads waiting for a page in [start, end), which moved or went away, fault again (as they would
  // natively: on the zeros of a dropped page, or nothing where memory moved away).
  void Unblock(Task* t, uint64_t start, uint64_t end) {
    for (auto it = t->faulted.begin(); it != t->faulted.end();) {
      if (it->first - start >= end - start) {
        ++it;
        continue;
      }
      uffdio_range r{it->first, kPage};
      ioctl(t->uffd, UFFDIO_WAKE, &r);
      it = t->faulted.erase(it);
    }
  }

  // mremap moved [from, from + len) to `to`: what waits for that range waits there now.
  void Remap(Task* t, uint64_t from, uint64_t to, uint64_t len) {
    Keep(PJ_KEEP_CHANGE, t, 0, from, len, to);
    auto shift = [&](auto& m) {
      auto a = m.lower_bound(from), b = m.lower_bound(from + len);
      std::vector<std::pair<uint64_t, typename std::decay_t<decltype(m)>::mapped_type>> out;
      for (auto it = a; it != b; ++it) out.emplace_back(it->first - from + to, std::move(it->second));
      m.erase(a, b);
      for (auto& [k, v] : out) m.insert_or_assign(k, std::move(v));
    };
    shift(t->waiting);
    shift(t->held);
    shift(t->stored);
    Unblock(t, from, from + len);
    t->changes.push_back({from, len, to});
    remaps_++;
  }

  // [start, end) was unmapped or its pages thrown away: nothing of the image goes there any more.
  void Drop(Task* t, uint64_t start, uint64_t end) {
    Keep(PJ_KEEP_CHANGE, t, 0, start, end - start, kDropped);
    auto erase = [&](auto& m) {
      auto a = m.lower_bound(start), b = m.lower_bound(end);
      size_t n = static_cast<size_t>(std::distance(a, b));
      m.erase(a, b);
      return n;
    };
    t->installed += erase(t->waiting) + erase(t->held) + erase(t->stored);
    Unblock(t, start, end);
    t->changes.push_back({start, end - start, kDropped});
    drops_++;
  }

  void ReadEvents(Task* t) {
    uffd_msg msg[16];
    for (;;) {
      ssize_t n = read(t->uffd, msg, sizeof msg);
      if (n <= 0) return;
      uint64_t now = NowNs();
      std::lock_guard<std::mutex> g(mu_);
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); i++) {
        const uffd_msg& m = msg[i];
        switch (m.event) {
          case UFFD_EVENT_PAGEFAULT: Fault(t, m.arg.pagefault.address & ~(kPage - 1), now); break;
          case UFFD_EVENT_FORK: Fork(t, static_cast<int>(m.arg.fork.ufd)); break;
          case UFFD_EVENT_REMAP: Remap(t, m.arg.remap.from, m.arg.remap.to, m.arg.remap.len); break;
          // A range dropped with MADV_DONTNEED stays registered (unregistering it would split the
          // mapping, and a later mremap of the whole would fail): its faults are answered with zeros.
          case UFFD_EVENT_UNMAP:
          case UFFD_EVENT_REMOVE: Drop(t, m.arg.remove.start, m.arg.remove.end); break;
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
    int uffd;
    if (pj_recv_fd(c, &byte, 1, &uffd, 0) <= 0 || uffd < 0) {
      if (uffd >= 0) close(uffd);
      return false;
    }
    fcntl(uffd, F_SETFL, fcntl(uffd, F_GETFL) | O_NONBLOCK);
    {
      std::lock_guard<std::mutex> g(mu_);
      auto t = std::make_unique<Task>();
      t->pid = pid;
      t->uffd = uffd;
      t->id = nextId_++;
      Keep(PJ_KEEP_TASK, t.get(), 0, 0, 0, 0, uffd);
      for (auto& e : early_[pid]) Place(t.get(), e.addr, e.page, e.background);
      early_.erase(pid);
      tasks_[uffd] = std::move(t);
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
      size_t n = 1;
      for (auto next = std::next(first); next != t->waiting.end() && n < kRunPages; ++next, ++n)
        if (next->first != addr + n * kPage || next->second.block != first->second.block || next->second.index != first->second.index + n) break;
      if (!Copy(t, t->waiting, addr, n)) Forget(it);
      return true;
    }
    return false;
  }

  // A task that ended (or exec'd); JavaScript hears of it when the last of its pid's tasks goes.
  void Forget(std::map<int, std::unique_ptr<Task>>::iterator it) {
    int pid = it->second->pid;
    Keep(PJ_KEEP_GONE, it->second.get());
    close(it->first);
    tasks_.erase(it);
    if (Of(pid).empty()) Emit(kGone, pid, 0);
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
        for (auto& [fd, t] : tasks_) {
          fds.push_back({fd, POLLIN, 0});
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
      for (Task* t : order) if (fds[at++].revents & POLLIN) ReadEvents(t);  // faults first
      busy = InstallSome();
    }
  }

  int listen_;
  int keeper_;
  uint32_t nextId_ = 1;
  int wake_;
  Napi::ThreadSafeFunction onEvent_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<int, std::unique_ptr<Task>> tasks_;  // by userfaultfd
  struct Early { uint64_t addr; bool background; Page page; };
  std::map<int, std::vector<Early>> early_;  // pages supplied before their task arrived
  std::vector<int> clients_;
  // Fault service times: the pager had the page (supplied, or its place in the store); the page came
  // from this host after the fault reached JavaScript; it was fetched from another host.
  std::vector<uint64_t> localNs_;
  std::vector<uint64_t> handedNs_;
  std::vector<uint64_t> fetchedNs_;
  uint64_t faults_ = 0;
  uint64_t faultsOnSupplied_ = 0;
  uint64_t forks_ = 0, remaps_ = 0, drops_ = 0;
};

std::map<int, std::unique_ptr<Pager>> pagers;
int nextPager = 1;

// A new pager's handle; info[1] is its onEvent, info[3] its CPU (pagerStart's and pagerAdopt's).
Napi::Value Register(const Napi::CallbackInfo& info, int listenFd, int keeper, std::vector<std::unique_ptr<Task>> adopted) {
  auto tsfn = Napi::ThreadSafeFunction::New(info.Env(), info[1].As<Napi::Function>(), "pj-pager", 0, 1);
  int id = nextPager++;
  int cpu = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : -1;
  pagers[id] = std::make_unique<Pager>(listenFd, keeper, std::move(adopted), std::move(tsfn), cpu);
  return Napi::Number::New(info.Env(), id);
}

Pager* PagerOf(const Napi::CallbackInfo& info) {
  auto it = pagers.find(info[0].As<Napi::Number>().Int32Value());
  if (it == pagers.end()) {
    Napi::TypeError::New(info.Env(), "no such pager").ThrowAsJavaScriptException();
    return nullptr;
  }
  return it->second.get();
}

}  // namespace

// pagerKeeperListen(path, ctx) -> fd: the listening seqpacket socket a keeper (pj-pager-keeper) serves on.
Napi::Value PagerKeeperListen(const Napi::CallbackInfo& info) {
  int err = 0;
  const char* syscall = "";
  int fd = ListenUnix(info[0].As<Napi::String>().Utf8Value(), SOCK_SEQPACKET, 4, err, syscall);
  if (fd < 0) return FailWith(info, 1, err, syscall);
  return Napi::Number::New(info.Env(), fd);
}

// pagerStart(socketPath, onEvent(kind, pid, addr), ctx, cpu, keeperPath) -> handle: listens on socketPath
// (as CRIU's lazy-pages daemon does) and starts the pager's thread, which tells the keeper at
// keeperPath of every task ('' for none). Events: 0 a task arrived, 1 a fault on a page not supplied
// (fetch it, then pagerSupply), 2 a task is gone, 3 a stored page did not match, 4 the keeper does not
// answer. cpu >= 0 pins its thread.
Napi::Value PagerStart(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string keeperPath = info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
  int err = 0;
  const char* syscall = "";
  int keeper = -1;
  if (!keeperPath.empty() && (keeper = ConnectKeeper(keeperPath)) < 0) return FailWith(info, 2, errno, "connect");
  int fd = ListenUnix(path, SOCK_STREAM, 8, err, syscall);
  if (fd < 0) {
    if (keeper >= 0) close(keeper);
    return FailWith(info, 2, err, syscall);
  }
  return Register(info, fd, keeper, {});
}

// pagerAdopt(keeperPath, onEvent, ctx, cpu) -> handle: a pager for the tasks the keeper at keeperPath
// holds (a dead agent's pager's), with what it knows of their memory; events as pagerStart's, a
// task event for each task at once.
Napi::Value PagerAdopt(const Napi::CallbackInfo& info) {
  int keeper = ConnectKeeper(info[0].As<Napi::String>().Utf8Value());
  if (keeper < 0) return FailWith(info, 2, errno, "connect");
  std::vector<std::unique_ptr<Task>> tasks;
  if (!AdoptFrom(keeper, tasks)) {
    int e = errno;
    close(keeper);
    return FailWith(info, 2, e, "recvmsg");
  }
  return Register(info, -1, keeper, std::move(tasks));
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

// pagerStop(handle): ends the thread and closes every userfaultfd; the keeper lets them go too.
Napi::Value PagerStop(const Napi::CallbackInfo& info) {
  Pager* p = PagerOf(info);
  if (p) {
    p->Finish();
    pagers.erase(info[0].As<Napi::Number>().Int32Value());
  }
  return info.Env().Undefined();
}

}  // namespace pj
