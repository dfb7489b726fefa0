/* pair_style physnet: runs a potential exported by physnet (physnet.export.export_potential)
   as an AOTInductor package (.pt2) through libtorch.

   Usage:
     plugin load /path/to/physnetplugin.so
     pair_style physnet                  # or: pair_style physnet images explicit
     pair_coeff * * model.pt2 H C O      # one element per LAMMPS atom type

   See pair_physnet.cpp for how the graph is built from LAMMPS's neighbour list and why the
   result is exact on any number of MPI ranks. */
#ifndef PHYSNET_PAIR_PHYSNET_H
#define PHYSNET_PAIR_PHYSNET_H

#include "pair.h"

#include <memory>
#include <string>
#include <vector>

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace LAMMPS_NS {

class PairPhysnet : public Pair {
 public:
  PairPhysnet(class LAMMPS *);
  ~PairPhysnet() override;

  void compute(int eflag, int vflag) override;
  void settings(int narg, char **arg) override;
  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int i, int j) override;

 protected:
  void allocate();
  void set_unit_factors(const std::string &energy_unit, const std::string &length_unit,
                        const std::string &energy_to_ev, const std::string &length_to_angstrom);

  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> model;
  std::string model_path;
  std::vector<long> type2z;    // atomic number of each LAMMPS type (index 1..ntypes)
  bool single_precision = false;    // metadata dtype == float32
  bool explicit_images = false;     // every ghost its own node (true) or images joined with shifts
  double cutoff = 0.0;              // edge cutoff, LAMMPS length units
  double interaction_range = 0.0;   // reach of one atom's energy, LAMMPS length units
  double length_to_model = 1.0;     // model length per LAMMPS length
  double energy_to_lammps = 1.0;    // LAMMPS energy per model energy
};

}    // namespace LAMMPS_NS

#endif
