"""MUSE (MUSE-News / MUSE-Books) as OpenUnlearning runs it (`muse-reference-spec.md`).

- `data.py`: one source API over the hub, a local folder in the hub's layout and the embedded world;
- `world.py`: the embedded world, a seeded corpus of fictitious news articles in MUSE-News' shape;
- `items.py`: training chunks and the verbmem / privleak / knowmem items (spec §2);
- `metrics.py`: the pure metric functions and the MUSE_EVAL / MUSE_SUMMARY entry shapes (spec §3-§4).

Modules are imported by name (nothing is imported here), so `import unlearn_lab.benchmarks.muse` stays cheap.
"""
