"""``rhosym xrd FILE``: the simulated powder XRD pattern of one structure (CIF or POSCAR)."""

from __future__ import annotations

HELP = "Simulate the powder XRD pattern (Cu Ka1/Ka2, 2-theta 5-105 deg) of one structure file."


def add_arguments(parser) -> None:
    parser.add_argument("file", help="structure file pymatgen reads (CIF, POSCAR, ...)")
    parser.add_argument("--out", required=True, help="CSV with columns two_theta,intensity")
    parser.add_argument("--plot", help="also save a plot (PNG)")
    parser.add_argument("--U", type=float, help="Caglioti U (deg^2)")
    parser.add_argument("--V", type=float, help="Caglioti V (deg^2)")
    parser.add_argument("--W", type=float, help="Caglioti W (deg^2)")
    parser.add_argument("--eta", type=float, help="pseudo-Voigt Lorentzian fraction")
    parser.add_argument("--b-iso", type=float, help="isotropic B (A^2) for sites without b_iso")


def run(args) -> int:
    from pymatgen.core import Structure

    from rhosym.logs import setup_logging
    from rhosym.xrd import XRDSettings, simulate, write_csv

    log = setup_logging()
    overrides = {"U": args.U, "V": args.V, "W": args.W, "eta": args.eta, "b_iso": args.b_iso}
    settings = XRDSettings.from_config({k: v for k, v in overrides.items() if v is not None})
    structure = Structure.from_file(args.file)
    pattern, d, _ = simulate(structure, settings)
    write_csv(args.out, settings, pattern)
    log.info("%s: %d reflections (unique d), %d points -> %s", args.file, len(d), len(pattern), args.out)
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
