# For the page-scan tests: MIB MiB mapped and written, page i filled with the
# byte i % 251, plus 16 MiB mapped and never touched. Prints both addresses as
# JSON, then sleeps until killed.
import ctypes, json, mmap, sys, time
n = int(sys.argv[1]) << 20
m = mmap.mmap(-1, n)
for i in range(n // 4096):
    m[i * 4096:(i + 1) * 4096] = bytes([i % 251]) * 4096
untouched = mmap.mmap(-1, 16 << 20)
addr = lambda mm: ctypes.addressof(ctypes.c_char.from_buffer(mm))
print(json.dumps({"written": addr(m), "untouched": addr(untouched)}), flush=True)
while True:
    time.sleep(1)
