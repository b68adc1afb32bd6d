# A job for the migration tests: prints "<n> <ms since epoch>" every 20 ms, forever.
import time
i = 0
while True:
    print(i, int(time.time() * 1000), flush=True)
    i += 1
    time.sleep(0.02)
