#!/usr/bin/env python3
"""A job for the migrate benchmark: holds MIB MiB of random memory (no page is
zero or shared, so every one is dumped), says "ready" and sleeps."""
import os, sys, time
held = [os.urandom(1 << 20) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
while True:
    time.sleep(1)
