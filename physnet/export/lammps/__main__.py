"""``python -m physnet.export.lammps``: build the LAMMPS plugin and print its path."""

from physnet.export.lammps import main

if __name__ == "__main__":
    raise SystemExit(main())
