// The addon's single entry point: registers every native function.
// native/binding.d.ts declares each one; keep the two in step.
#include <napi.h>

namespace pj {
Napi::Value PeerCred(const Napi::CallbackInfo& info);
Napi::Value UffdProbe(const Napi::CallbackInfo& info);
Napi::Value FuseOpen(const Napi::CallbackInfo& info);
Napi::Value FuseMount(const Napi::CallbackInfo& info);
Napi::Value FuseUnmount(const Napi::CallbackInfo& info);
Napi::Value FuseBackingOpen(const Napi::CallbackInfo& info);
Napi::Value FuseBackingClose(const Napi::CallbackInfo& info);
Napi::Value FuseWrite(const Napi::CallbackInfo& info);
Napi::Value FuseStartReader(const Napi::CallbackInfo& info);
Napi::Value Openat2(const Napi::CallbackInfo& info);
Napi::Value OfdLock(const Napi::CallbackInfo& info);
Napi::Value Flock(const Napi::CallbackInfo& info);
Napi::Value Renameat2(const Napi::CallbackInfo& info);
Napi::Value Mknodat(const Napi::CallbackInfo& info);
Napi::Value Utimens(const Napi::CallbackInfo& info);
Napi::Value Fallocate(const Napi::CallbackInfo& info);
Napi::Value Lseek(const Napi::CallbackInfo& info);
Napi::Value CopyFileRange(const Napi::CallbackInfo& info);
Napi::Value Getxattr(const Napi::CallbackInfo& info);
Napi::Value Listxattr(const Napi::CallbackInfo& info);
Napi::Value Setxattr(const Napi::CallbackInfo& info);
Napi::Value Removexattr(const Napi::CallbackInfo& info);
Napi::Value PollNow(const Napi::CallbackInfo& info);
Napi::Value PageScan(const Napi::CallbackInfo& info);
Napi::Value ReadPagesOf(const Napi::CallbackInfo& info);
Napi::Value ReadPagesAsync(const Napi::CallbackInfo& info);
Napi::Value HashPages(const Napi::CallbackInfo& info);
Napi::Value ActAs(const Napi::CallbackInfo& info);
Napi::Value ActAsSelf(const Napi::CallbackInfo& info);
Napi::Value PagerKeeperListen(const Napi::CallbackInfo& info);
Napi::Value PagerStart(const Napi::CallbackInfo& info);
Napi::Value PagerAdopt(const Napi::CallbackInfo& info);
Napi::Value PagerSupply(const Napi::CallbackInfo& info);
Napi::Value PagerSupplyStored(const Napi::CallbackInfo& info);
Napi::Value PagerStats(const Napi::CallbackInfo& info);
Napi::Value PagerStop(const Napi::CallbackInfo& info);
Napi::Value SeqpacketServe(const Napi::CallbackInfo& info);
Napi::Value SeqpacketConnect(const Napi::CallbackInfo& info);
Napi::Value SeqpacketSend(const Napi::CallbackInfo& info);
Napi::Value CloseFd(const Napi::CallbackInfo& info);
Napi::Value DupFd(const Napi::CallbackInfo& info);
Napi::Value FdOfProcess(const Napi::CallbackInfo& info);
Napi::Value TcpConnect(const Napi::CallbackInfo& info);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCred", Napi::Function::New(env, pj::PeerCred, "peerCred"));
  exports.Set("uffdProbe", Napi::Function::New(env, pj::UffdProbe, "uffdProbe"));
  exports.Set("fuseOpen", Napi::Function::New(env, pj::FuseOpen, "fuseOpen"));
  exports.Set("fuseMount", Napi::Function::New(env, pj::FuseMount, "fuseMount"));
  exports.Set("fuseUnmount", Napi::Function::New(env, pj::FuseUnmount, "fuseUnmount"));
  exports.Set("fuseBackingOpen", Napi::Function::New(env, pj::FuseBackingOpen, "fuseBackingOpen"));
  exports.Set("fuseBackingClose", Napi::Function::New(env, pj::FuseBackingClose, "fuseBackingClose"));
  exports.Set("fuseWrite", Napi::Function::New(env, pj::FuseWrite, "fuseWrite"));
  exports.Set("fuseStartReader", Napi::Function::New(env, pj::FuseStartReader, "fuseStartReader"));
  exports.Set("pageScan", Napi::Function::New(env, pj::PageScan, "pageScan"));
  exports.Set("readPages", Napi::Function::New(env, pj::ReadPagesOf, "readPages"));
  exports.Set("readPagesAsync", Napi::Function::New(env, pj::ReadPagesAsync, "readPagesAsync"));
  exports.Set("hashPages", Napi::Function::New(env, pj::HashPages, "hashPages"));
  exports.Set("actAs", Napi::Function::New(env, pj::ActAs, "actAs"));
  exports.Set("actAsSelf", Napi::Function::New(env, pj::ActAsSelf, "actAsSelf"));
  exports.Set("pagerKeeperListen", Napi::Function::New(env, pj::PagerKeeperListen, "pagerKeeperListen"));
  exports.Set("pagerStart", Napi::Function::New(env, pj::PagerStart, "pagerStart"));
  exports.Set("pagerAdopt", Napi::Function::New(env, pj::PagerAdopt, "pagerAdopt"));
  exports.Set("pagerSupply", Napi::Function::New(env, pj::PagerSupply, "pagerSupply"));
  exports.Set("pagerSupplyStored", Napi::Function::New(env, pj::PagerSupplyStored, "pagerSupplyStored"));
  exports.Set("pagerStats", Napi::Function::New(env, pj::PagerStats, "pagerStats"));
  exports.Set("pagerStop", Napi::Function::New(env, pj::PagerStop, "pagerStop"));
  exports.Set("seqpacketServe", Napi::Function::New(env, pj::SeqpacketServe, "seqpacketServe"));
  exports.Set("seqpacketConnect", Napi::Function::New(env, pj::SeqpacketConnect, "seqpacketConnect"));
  exports.Set("seqpacketSend", Napi::Function::New(env, pj::SeqpacketSend, "seqpacketSend"));
  exports.Set("closeFd", Napi::Function::New(env, pj::CloseFd, "closeFd"));
  exports.Set("dupFd", Napi::Function::New(env, pj::DupFd, "dupFd"));
  exports.Set("fdOfProcess", Napi::Function::New(env, pj::FdOfProcess, "fdOfProcess"));
  exports.Set("tcpConnect", Napi::Function::New(env, pj::TcpConnect, "tcpConnect"));
  exports.Set("openat2", Napi::Function::New(env, pj::Openat2, "openat2"));
  exports.Set("ofdLock", Napi::Function::New(env, pj::OfdLock, "ofdLock"));
  exports.Set("flock", Napi::Function::New(env, pj::Flock, "flock"));
  exports.Set("renameat2", Napi::Function::New(env, pj::Renameat2, "renameat2"));
  exports.Set("mknodat", Napi::Function::New(env, pj::Mknodat, "mknodat"));
  exports.Set("utimens", Napi::Function::New(env, pj::Utimens, "utimens"));
  exports.Set("fallocate", Napi::Function::New(env, pj::Fallocate, "fallocate"));
  exports.Set("lseek", Napi::Function::New(env, pj::Lseek, "lseek"));
  exports.Set("copyFileRange", Napi::Function::New(env, pj::CopyFileRange, "copyFileRange"));
  exports.Set("getxattr", Napi::Function::New(env, pj::Getxattr, "getxattr"));
  exports.Set("listxattr", Napi::Function::New(env, pj::Listxattr, "listxattr"));
  exports.Set("setxattr", Napi::Function::New(env, pj::Setxattr, "setxattr"));
  exports.Set("removexattr", Napi::Function::New(env, pj::Removexattr, "removexattr"));
  exports.Set("pollNow", Napi::Function::New(env, pj::PollNow, "pollNow"));
  return exports;
}

NODE_API_MODULE(pj_native, Init)
