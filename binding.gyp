{
  "targets": [{
    "target_name": "pj_native",
    "sources": [
      "native/src/addon.cc",
      "native/src/peer-cred.cc",
      "native/src/act-as.cc",
      "native/src/uffd-probe.cc",
      "native/src/fuse-device.cc",
      "native/src/openat2.cc",
      "native/src/file-locks.cc",
      "native/src/file-ops.cc",
      "native/src/page-hash.cc",
      "native/src/uffd-pager.cc",
      "native/src/net-fds.cc"
    ],
    "libraries": ["-lxxhash"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=9", "NAPI_DISABLE_CPP_EXCEPTIONS"],
    "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"]
  }, {
    "target_name": "pj-init",
    "type": "executable",
    "sources": ["native/init/pj-init.c", "native/init/relay.c", "native/init/job-net.c", "native/init/job-mounts.c"],
    "cflags": ["-O2", "-Wall", "-Wextra"]
  }, {
    "target_name": "pj-holder",
    "type": "executable",
    "sources": ["native/holder/pj-holder.c"],
    "cflags": ["-O2", "-Wall", "-Wextra"]
  }, {
    "target_name": "pj-pager-keeper",
    "type": "executable",
    "sources": ["native/pager-keeper/pj-pager-keeper.c"],
    "cflags": ["-O2", "-Wall", "-Wextra"]
  }, {
    "target_name": "pj-rearm-timers",
    "type": "executable",
    "sources": ["native/restore/rearm-timers.c"],
    "cflags": ["-O2", "-Wall", "-Wextra"]
  }]
}
