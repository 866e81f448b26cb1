"""Speed and memory benchmarks (``rhosym bench KIND``): one module per kind, each with ``main(argv)``.

* ``density``: dense densities, sampling, store sizes, CHGCAR parsing;
* ``inputs``: powder XRD and crystal graphs per structure;
* ``train``: training and inference throughput of every model, sparse vs dense 3D CNN;
* ``loader``: peak memory and samples/s of one training epoch read from zarr shards, at two store
  sizes (the memory must not grow with the rows);
* ``cctbx-compare``: the classical space-group finder of :mod:`rhosym.symops` against
  ``cctbx.symmetry_search`` on the same structures (cctbx runs from its own environment);
* ``scale``: a 200,000-row manifest through split, and 200,000 test predictions per model through
  metrics and tables (time and peak memory against the budgets).
"""
