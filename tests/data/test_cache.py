import multiprocessing as mp
import os

import numpy as np

from voxnas.data.cache import build_cache, cache_key
from voxnas.data.layouts import read_dataset
from voxnas.data.preprocess import PreprocessSettings


def test_built_once_memory_mapped_and_reused(msd_dir, tmp_path):
    ds = read_dataset(msd_dir)
    calls = []
    c1 = build_cache(ds, PreprocessSettings(), tmp_path, progress=lambda i, n: calls.append(i))
    assert len(calls) == len(ds.cases)
    case = c1.load(ds.case_ids[0])
    assert isinstance(case.image, np.memmap) and case.image.dtype == np.float32
    assert abs(float(case.image.mean())) < 1e-3  # z-scored
    c2 = build_cache(ds, PreprocessSettings(), tmp_path, progress=lambda i, n: calls.append(-i))
    assert c2.path == c1.path and min(calls) > 0  # nothing rebuilt


def test_key_changes_with_settings_and_sources(msd_dir, tmp_path):
    ds = read_dataset(msd_dir)
    k1 = cache_key(ds, PreprocessSettings())
    assert cache_key(ds, PreprocessSettings(ct_window=(-200, 300))) != k1
    f = ds.cases[0].images[0]
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert cache_key(ds, PreprocessSettings()) != k1
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


def _build(root, cache_dir, q):
    c = build_cache(read_dataset(root), PreprocessSettings(), cache_dir)
    q.put(str(c.path))


def test_two_processes_build_at_once(msd_dir, tmp_path):
    q = mp.get_context("fork").Queue()
    procs = [
        mp.get_context("fork").Process(target=_build, args=(msd_dir, tmp_path, q)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    paths = {q.get(timeout=5), q.get(timeout=5)}
    assert len(paths) == 1
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert not [e for e in entries if ".tmp-" in e]  # no half-built leftovers
    c = build_cache(read_dataset(msd_dir), PreprocessSettings(), tmp_path)
    assert len(c.case_ids) == 6
