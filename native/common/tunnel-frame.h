// A tunnel's framing, spoken by its two ends (a job's relay, native/init/relay.c, and the holder of
// the outside end, native/holder/pj-holder.c, on different hosts): each chunk is a little-endian u32
// length and that many bytes; a zero length is the sender's EOF, in band, so that closing the tunnel
// itself can mean "paused for a detach", never "ended".
#pragma once
#include <stdint.h>
#include <string.h>

#define PJ_FRAME_HEADER 4
#define PJ_FRAME_MAX 65536  // the most a sender puts in one frame (a reader takes any length)

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "frame lengths are written in host order, and read as little-endian on the other host");

static inline void pj_frame_header(char out[PJ_FRAME_HEADER], uint32_t len) { memcpy(out, &len, PJ_FRAME_HEADER); }
static inline uint32_t pj_frame_length(const char in[PJ_FRAME_HEADER]) {
  uint32_t len;
  memcpy(&len, in, PJ_FRAME_HEADER);
  return len;
}
