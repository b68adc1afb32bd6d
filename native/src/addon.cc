// The addon's single entry point: registers every native function.
// native/binding.d.ts declares each one; keep the two in step.
#include <napi.h>

namespace pj {
Napi::Value PeerCred(const Napi::CallbackInfo& info);
Napi::Value UffdProbe(const Napi::CallbackInfo& info);
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCred", Napi::Function::New(env, pj::PeerCred, "peerCred"));
  exports.Set("uffdProbe", Napi::Function::New(env, pj::UffdProbe, "uffdProbe"));
  return exports;
}

NODE_API_MODULE(pj_native, Init)
