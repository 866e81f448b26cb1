"""Reading (and writing) the input files: one decompression helper and one module per format.

* :mod:`rhosym.io.limits` — the input limits (``ingest.max_bytes``, ``ingest.max_grid_points``,
  ``ingest.max_input_sites``), the one-line refusal they raise, and the limits in force;
* :mod:`rhosym.io.compress` — plain/.gz/.bz2/.xz (by magic bytes), streamed, refused past ``max_bytes``;
* :mod:`rhosym.io.structures` — CIF (every data block), POSCAR, CDVAE CSV rows, and ``read_any``;
* :mod:`rhosym.io.chgcar` — VASP CHGCAR reader/writer and its header reader;
* :mod:`rhosym.io.mp_json` — Materials Project charge-density JSON, its ids, the metadata tables;
* :mod:`rhosym.io.ccp4` — CCP4/MRC maps (and CHGCAR-like files) as measured densities.

Kept light: importing this package (and :mod:`~rhosym.io.limits`) imports no numpy; the format modules
are imported where they are used. The Materials Project download client is :mod:`rhosym.mp_download`.
"""
