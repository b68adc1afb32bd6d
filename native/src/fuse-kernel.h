// FUSE protocol pieces newer than Debian 12's 6.1 kernel headers (protocol 7.38),
// with the kernel's names (include/uapi/linux/fuse.h, 7.40+): passthrough,
// backing files and the INIT reply's max_stack_depth.
#pragma once
#include <linux/fuse.h>
#include <stdint.h>
#include <sys/ioctl.h>

#ifndef FUSE_DEV_IOC_BACKING_OPEN
struct fuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define FUSE_DEV_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct fuse_backing_map)
#define FUSE_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)
#endif
