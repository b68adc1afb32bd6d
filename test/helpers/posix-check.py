#!/usr/bin/env python3
"""POSIX behaviour of a directory, as a real program sees it: runs each check in
a fresh folder under ROOT and prints one JSON object {check: result}. A result
is the value the check observed, or "ERR:<errno name>" when it raised."""
import errno, json, mmap, os, shutil, stat, sys

root = sys.argv[1]
base = os.path.join(root, f"posix-{os.getpid()}")
os.mkdir(base)
results = {}

def check(name):
    def wrap(fn):
        d = os.path.join(base, name)
        os.mkdir(d)
        try:
            results[name] = fn(d)
        except OSError as e:
            results[name] = "ERR:" + errno.errorcode.get(e.errno, str(e.errno))
        return fn
    return wrap

def err(fn, *a):
    try:
        fn(*a)
        return "ok"
    except OSError as e:
        return "ERR:" + errno.errorcode[e.errno]

@check("write_read")
def _(d):
    p = os.path.join(d, "f")
    with open(p, "wb") as f: f.write(b"hello world")
    with open(p, "r+b") as f:
        f.seek(6); f.write(b"WORLD")
    return open(p, "rb").read().decode()

@check("append")
def _(d):
    p = os.path.join(d, "f")
    for i in range(3):
        with open(p, "ab") as f: f.write(b"%d" % i)
    return open(p, "rb").read().decode()

@check("stat")
def _(d):
    p = os.path.join(d, "f")
    with open(p, "wb") as f: f.write(b"x" * 5000)
    os.chmod(p, 0o640)
    os.utime(p, (1000000000, 1200000000))
    st = os.stat(p)
    return [stat.S_ISREG(st.st_mode), oct(st.st_mode & 0o7777), st.st_size, int(st.st_mtime), st.st_nlink]

@check("truncate")
def _(d):
    p = os.path.join(d, "f")
    with open(p, "wb") as f: f.write(b"0123456789")
    os.truncate(p, 4)
    a = open(p, "rb").read().decode()
    os.truncate(p, 8)
    return [a, open(p, "rb").read().hex()]

@check("mkdir_rmdir")
def _(d):
    p = os.path.join(d, "sub")
    os.mkdir(p)
    again = err(os.mkdir, p)
    open(os.path.join(p, "x"), "w").close()
    notempty = err(os.rmdir, p)
    os.unlink(os.path.join(p, "x"))
    os.rmdir(p)
    return [again, notempty, os.path.exists(p)]

@check("enoent")
def _(d):
    return [err(os.stat, os.path.join(d, "nope")), err(os.unlink, os.path.join(d, "nope")), err(open, os.path.join(d, "nope", "x"), "w")]

@check("readdir")
def _(d):
    for n in ["b", "a", "c"]: open(os.path.join(d, n), "w").close()
    os.mkdir(os.path.join(d, "dir"))
    return sorted(os.listdir(d))

@check("rename")
def _(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    with open(a, "w") as f: f.write("A")
    with open(b, "w") as f: f.write("B")
    os.rename(a, b)
    os.mkdir(os.path.join(d, "dir"))
    os.rename(b, os.path.join(d, "dir", "moved"))
    os.rename(os.path.join(d, "dir"), os.path.join(d, "dir2"))
    return [os.path.exists(a), open(os.path.join(d, "dir2", "moved")).read()]

@check("symlink")
def _(d):
    with open(os.path.join(d, "target"), "w") as f: f.write("T")
    os.symlink("target", os.path.join(d, "link"))
    st = os.lstat(os.path.join(d, "link"))
    return [os.readlink(os.path.join(d, "link")), stat.S_ISLNK(st.st_mode), open(os.path.join(d, "link")).read()]

@check("hardlink")
def _(d):
    a = os.path.join(d, "a")
    with open(a, "w") as f: f.write("same")
    os.link(a, os.path.join(d, "b"))
    sa, sb = os.stat(a), os.stat(os.path.join(d, "b"))
    return [sa.st_nlink, sa.st_ino == sb.st_ino, open(os.path.join(d, "b")).read()]

@check("excl")
def _(d):
    p = os.path.join(d, "f")
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    return [err(os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), oct(os.stat(p).st_mode & 0o777)]

@check("mmap_shared_write")
def _(d):
    p = os.path.join(d, "m")
    with open(p, "wb") as f: f.write(b"\0" * 8192)
    with open(p, "r+b") as f:
        m = mmap.mmap(f.fileno(), 8192)
        m[100:105] = b"mmap!"
        m.flush(); m.close()
    return open(p, "rb").read()[100:105].decode()

@check("fsync_large")
def _(d):
    p = os.path.join(d, "big")
    data = os.urandom(3 * 1024 * 1024 + 17)
    with open(p, "wb") as f:
        f.write(data); f.flush(); os.fsync(f.fileno())
    return open(p, "rb").read() == data

@check("unlink_open_file")
def _(d):
    p = os.path.join(d, "f")
    with open(p, "w") as f: f.write("still here")
    f = open(p)
    os.unlink(p)
    return [os.path.exists(p), f.read()]

@check("statvfs")
def _(d):
    s = os.statvfs(d)
    return [s.f_bsize > 0, s.f_blocks > 0]

@check("xattr")
def _(d):
    p = os.path.join(d, "f")
    open(p, "w").close()
    os.setxattr(p, "user.color", b"blue")
    os.setxattr(p, "user.size", b"xl")
    excl = err(os.setxattr, p, "user.color", b"red", os.XATTR_CREATE)
    got = os.getxattr(p, "user.color").decode()
    os.removexattr(p, "user.size")
    return [got, sorted(n for n in os.listxattr(p) if n.startswith("user.")), excl, err(os.getxattr, p, "user.size")]

@check("fallocate_seek")
def _(d):
    p = os.path.join(d, "sparse")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    os.posix_fallocate(fd, 0, 8192)
    size_after_alloc = os.fstat(fd).st_size
    os.ftruncate(fd, 1 << 20)
    os.pwrite(fd, b"data", 512 * 1024)
    os.fsync(fd)
    data = os.lseek(fd, 300 * 1024, os.SEEK_DATA)
    hole = os.lseek(fd, 512 * 1024, os.SEEK_HOLE)
    os.close(fd)
    return [size_after_alloc, data, hole]

@check("copy_file_range")
def _(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    with open(a, "wb") as f: f.write(b"0123456789" * 1000)
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_WRONLY | os.O_CREAT, 0o644)
    n = os.copy_file_range(fa, fb, 5000, 100, 10)
    os.close(fa); os.close(fb)
    return [n, open(b, "rb").read()[10:20].decode(), os.path.getsize(b)]

@check("rename_flags")
def _(d):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, NOREPLACE, EXCHANGE = -100, 1, 2
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    with open(a, "w") as f: f.write("A")
    with open(b, "w") as f: f.write("B")
    def ren(x, y, flags):
        if libc.renameat2(AT_FDCWD, x.encode(), AT_FDCWD, y.encode(), flags) == 0: return "ok"
        return "ERR:" + errno.errorcode[ctypes.get_errno()]
    noreplace = ren(a, b, NOREPLACE)
    exchange = ren(a, b, EXCHANGE)
    return [noreplace, exchange, open(a).read(), open(b).read()]

@check("mkfifo")
def _(d):
    p = os.path.join(d, "fifo")
    os.mkfifo(p, 0o600)
    return stat.S_ISFIFO(os.stat(p).st_mode)

@check("mknod_device")
def _(d):
    return err(os.mknod, os.path.join(d, "dev"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))

shutil.rmtree(base)
print(json.dumps(results))
