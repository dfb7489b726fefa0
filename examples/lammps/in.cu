# Bulk copper (500 atoms) with a physnet potential in LAMMPS (pair_style physnet): NVE, then NPT.
#
#   .venv/bin/physnet export my_cu_potential.pt cu.pt2          # e.g. trained on the embedded cu_emt set
#   eval "$(.venv/bin/physnet lammps-plugin --env)"    # builds once (cached); sets PHYSNET_LAMMPS_PLUGIN,
#                                                     # LD_LIBRARY_PATH (mpich), LD_PRELOAD (libtorch's BLAS)
#   .venv/bin/mpirun -n 2 .venv/bin/lmp -in examples/lammps/in.cu -var plugin $PHYSNET_LAMMPS_PLUGIN -var model cu.pt2
#
# Any number of MPI ranks gives the same numbers: the pair style widens the ghost shell to the model's
# interaction range (n_layers x cutoff for message passing) and sums ghost forces back (newton on).
# Pressure (thermo press, fix npt) comes from the model's virial. Units metal: eV, Å, ps, bar.
units           metal
atom_style      atomic
atom_modify     map array
boundary        p p p
lattice         fcc 3.61
region          box block 0 5 0 5 0 5
create_box      1 box
create_atoms    1 box
mass            1 63.546

plugin          load ${plugin}
pair_style      physnet
pair_coeff      * * ${model} Cu
neighbor        1.0 bin

velocity        all create 600.0 87287 loop geom
timestep        0.002
thermo          50
thermo_style    custom step time temp pe etotal press vol

fix             nve all nve
run             500
unfix           nve

fix             npt all npt temp 300.0 300.0 0.2 iso 0.0 0.0 2.0
run             500
