// A page's XXH3-128 hash in canonical (big-endian) form: the page store's key.
#pragma once
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pj {

constexpr size_t kHashBytes = 16;

inline void HashPage(const uint8_t* page, size_t pageBytes, uint8_t out[kHashBytes]) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(page, pageBytes));
  memcpy(out, c.digest, kHashBytes);
}

}  // namespace pj
