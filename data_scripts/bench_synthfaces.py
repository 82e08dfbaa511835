"""Benchmark: how fast SynthFaces renders (faces per second), on CPU and, if present, CUDA.

    python data_scripts/bench_synthfaces.py --n 10000 --size 64 [--device cuda] [--chunk 256]

Prints one line per device with the wall time for ``n`` faces (a warm-up batch first).
"""
import argparse
import time

import numpy as np
import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    from ssl_lab.data.splits import SPECS
    from ssl_lab.data.synthfaces import render_faces
    spec = SPECS["celeba"]
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    render_faces(np.arange(a.chunk), np.arange(a.chunk), size=a.size, cfg=spec.cfg, device=dev)
    sync()
    t0 = time.perf_counter()
    for s in range(0, a.n, a.chunk):
        idx = np.arange(s, min(a.n, s + a.chunk))
        render_faces(idx, idx // spec.per_identity, seed=spec.seed, size=a.size, cfg=spec.cfg, device=dev)
    sync()
    dt = time.perf_counter() - t0
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{a.n} faces at {a.size} px in {dt:.1f} s ({a.n / dt:.0f} faces/s) on {where}, chunk {a.chunk}")


if __name__ == "__main__":
    main()
