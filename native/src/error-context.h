// How native code reports a failed syscall: it fills the caller's context object
// ({ errno, syscall }) and returns undefined; TypeScript builds the Error so that
// the stack is a JavaScript one (CONVENTIONS.md, rule 2).
#pragma once
#include <napi.h>

namespace pj {

inline Napi::Value FailWith(const Napi::CallbackInfo& info, size_t ctxIndex, int err, const char* syscall) {
  Napi::Env env = info.Env();
  if (info.Length() > ctxIndex && info[ctxIndex].IsObject()) {
    Napi::Object ctx = info[ctxIndex].As<Napi::Object>();
    ctx.Set("errno", Napi::Number::New(env, err));
    ctx.Set("syscall", Napi::String::New(env, syscall));
  }
  return env.Undefined();
}

// Argument checks are programming errors: they throw a TypeError at once.
inline bool RequireInt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() > i && info[i].IsNumber()) return true;
  Napi::TypeError::New(info.Env(), std::string("argument '") + name + "' must be a number")
      .ThrowAsJavaScriptException();
  return false;
}

}  // namespace pj
