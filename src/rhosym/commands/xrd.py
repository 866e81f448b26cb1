"""``rhosym xrd FILE``: the simulated powder XRD pattern of one structure (CIF or POSCAR).

The structure goes through ingest's path first (rhosym.ingest.prepare: the structure checks, labels and
the density cell, ``--cell``, default conventional, which the xrd stage simulates too). Bad input: one
line on stderr, exit status 1 (rhosym.cli).
"""

from __future__ import annotations

HELP = "Simulate the powder XRD pattern (Cu Ka1/Ka2, 2-theta 5-105 deg) of one structure file."


def add_arguments(parser) -> None:
    from rhosym.commands._common import add_check_options, cell_choices
    from rhosym.settings import XrdSettings

    d = {k: f.default for k, f in XrdSettings.model_fields.items()}
    parser.add_argument("file", help="structure file pymatgen reads (CIF, POSCAR, CHGCAR, ...)")
    parser.add_argument("--out", required=True, help="CSV with columns two_theta,intensity")
    parser.add_argument("--plot", help="also save a plot (PNG)")
    parser.add_argument("--cell", choices=cell_choices(), default="conventional",
                        help="cell simulated, as ingest makes it (default conventional)")
    parser.add_argument("--U", type=float, help=f"Caglioti U, deg^2 (default {d['U']})")
    parser.add_argument("--V", type=float, help=f"Caglioti V, deg^2 (default {d['V']})")
    parser.add_argument("--W", type=float, help=f"Caglioti W, deg^2 (default {d['W']})")
    parser.add_argument("--eta", type=float, help=f"pseudo-Voigt Lorentzian fraction (default {d['eta']})")
    parser.add_argument("--b-iso", type=float,
                        help=f"isotropic B (A^2) for sites without b_iso (default {d['b_iso']})")
    add_check_options(parser)


def run(args) -> int:
    from rhosym.commands._common import about, ingest_settings, prepare_structure, read_structure
    from rhosym.logs import setup_logging
    from rhosym.xrd import XRDSettings, simulate, write_csv

    log = setup_logging()
    overrides = {"U": args.U, "V": args.V, "W": args.W, "eta": args.eta, "b_iso": args.b_iso}
    settings = XRDSettings.from_config({k: v for k, v in overrides.items() if v is not None})
    ingest = ingest_settings(args)
    rec, source = read_structure(args.file, ingest)
    structure, _labels = prepare_structure(rec, source, args.cell, ingest)
    with about(source):
        pattern, d, _ = simulate(structure, settings)
    write_csv(args.out, settings, pattern)
    log.info("%s: %d reflections (unique d), %d points -> %s", source, len(d), len(pattern), args.out)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3))
        ax.plot(settings.two_theta, pattern, lw=0.7)
        ax.set_xlabel("2θ (°, Cu Kα)")
        ax.set_ylabel("intensity (max 1)")
        ax.set_title(f"{structure.composition.reduced_formula} ({args.file})", fontsize=9)
        ax.set_xlim(settings.two_theta_min, settings.two_theta_max)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=150)
        plt.close(fig)
    return 0
