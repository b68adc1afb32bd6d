#!/usr/bin/env python3
"""A job for the migrate and mem benchmarks: holds MIB MiB of random memory (no
page is zero or shared, so every one is dumped), says "ready" and sleeps.
  dirty=RATE  rewrites RATE MiB/s of it, block after block, all the time;
  touch       reads every page again and again (faults right after a resume);
  SIGUSR1     rewrites the first 32 MiB once and says "dirtied 32"."""
import os, signal, sys, threading, time
MiB = 1 << 20
held = [os.urandom(MiB) for _ in range(int(sys.argv[1]))]
opts = sys.argv[2:]

def dirty(rate):
    i = 0
    while True:
        held[i % len(held)] = os.urandom(MiB)
        i += 1
        time.sleep(1 / rate)

def touch():
    while True:
        for b in held:
            b[::4096]  # one byte of every page

def on_usr1(*_):
    for i in range(min(32, len(held))):
        held[i] = os.urandom(MiB)
    print("dirtied 32", flush=True)

signal.signal(signal.SIGUSR1, on_usr1)
for o in opts:
    if o.startswith("dirty="):
        threading.Thread(target=dirty, args=(float(o[6:]),), daemon=True).start()
    elif o == "touch":
        threading.Thread(target=touch, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(1)
