/* pair_style physnet: a physnet potential exported as an AOTInductor package (.pt2).

   The exported model maps (pos [N,3], z [N], batch [N], cell [G,3,3], edge_index [2,E],
   edge_shift [E,3], weight [N]) to (energy [G], atomic_energy [N], forces [N,3], virial [G,3,3]),
   energy = sum_i weight_i * e_i, forces = -dE/dpos for every atom. physnet/export writes it;
   the metadata keys read below are the contract ("format" = "physnet.export/1").

   How LAMMPS's domain decomposition is served exactly:
   - Every rank builds one graph over its owned (local) atoms and the ghost atoms the local energies
     can see. weight = 1 for local atoms and 0 for ghosts: each rank's energy is the sum of its own
     atoms' energies, so the sum over ranks is the total energy, counted once.
   - A local atom's energy after L message-passing layers depends on atoms up to L edges (hops) away,
     L x cutoff in space (metadata "interaction_range"). The ghost shell is widened to
     interaction_range + skin (comm->cutghostuser, the value `comm_modify cutoff` sets;
     https://docs.lammps.org/comm_modify.html), and the full neighbour list has lists for ghosts too
     (https://docs.lammps.org/Developer_notes.html). Atoms up to L hops from a local atom enter the
     graph; those up to L - 1 hops get their edges. Ghosts further out have incomplete
     neighbourhoods, but their wrong features travel one hop per layer and never reach a local atom.
   - Periodic images (default, `images shift`): all images of one atom (the local atom and its ghost
     images, or several ghost images of another rank's atom) become one graph node, and each edge
     carries the integer cell shift between the images, r_ij = pos[j] - pos[i] + shift @ cell. Images
     of one atom have identical features in a periodic system, and the node's edges are those of its
     image nearest (in hops) to the local atoms, which has a complete neighbourhood; so this is exact,
     and a single rank evaluates exactly the periodic graph (no duplicated work for the ghost shell).
     The force on a node (the sum over its images) goes to one image; the virial is the model's
     -dE/d(strain) of positions and cell together, which is this rank's share of the total.
     `images explicit` keeps every ghost as its own node with zero shifts (more work, no atom IDs
     needed) and takes the virial as sum r (x) f over local and ghost atoms (virial_fdotr_compute).
   - Forces on ghost atoms are added to atom->f of the ghosts; LAMMPS's reverse communication
     (newton_pair on) sums them onto the owning atoms (https://docs.lammps.org/newton.html). */

#include "pair_physnet.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

using namespace LAMMPS_NS;

namespace {

// eV per energy unit and Å per length unit, the same values as physnet/units.py (ASE's CODATA 2014)
// so that LAMMPS and physnet.Calculator convert identically.
const std::map<std::string, double> EV_PER_UNIT = {
    {"eV", 1.0},
    {"meV", 1e-3},
    {"kcal/mol", 0.04336410390059322},
    {"kJ/mol", 0.010364269574711572},
    {"Hartree", 27.211386024367243},
    {"Ha", 27.211386024367243},
    {"Ry", 13.605693012183622},
};
const std::map<std::string, double> ANGSTROM_PER_UNIT = {
    {"Å", 1.0}, {"Angstrom", 1.0}, {"A", 1.0}, {"Bohr", 0.5291772105638411}, {"nm", 10.0}, {"pm", 0.01},
};

std::vector<std::string> split_words(const std::string &s)
{
  std::istringstream in(s);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// c10::Error messages carry a C++ backtrace after the first line; LAMMPS error lines keep only the first.
std::string first_line(const char *what)
{
  std::string s(what);
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairPhysnet::PairPhysnet(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;      // no pairwise single(): the energy is many-body
  restartinfo = 0;        // the model file is not written to restart files
  one_coeff = 1;          // only `pair_coeff * * file elements...`
  manybody_flag = 1;
  ghostneigh = 1;         // ghosts need their own neighbour lists (message passing)
  centroidstressflag = CENTROID_NOTAVAIL;
#ifdef __GLIBC__
  // The compiled model allocates its large per-step buffers afresh at every call. glibc serves
  // blocks above 32 MB with mmap and unmaps them on free, so every step would fault each 4 KB page
  // in again (about half the time of a 5,000-atom SchNet step). Serve every block from the heap
  // and keep up to 1 GiB of freed heap for the next step, as physnet.export.keep_freed_memory does
  // in Python. Process-wide; the resident memory stays at its peak between steps.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

PairPhysnet::~PairPhysnet()
{
  if (copymode) return;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairPhysnet::allocate()
{
  allocated = 1;
  const int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  memory->create(cutghost, n + 1, n + 1, "pair:cutghost");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
  type2z.assign(n + 1, 0);
}

/* ----------------------------------------------------------------------
   pair_style physnet [images shift|explicit]
------------------------------------------------------------------------- */

void PairPhysnet::settings(int narg, char **arg)
{
  explicit_images = false;
  int iarg = 0;
  while (iarg < narg) {
    if (strcmp(arg[iarg], "images") == 0 && iarg + 1 < narg) {
      if (strcmp(arg[iarg + 1], "shift") == 0)
        explicit_images = false;
      else if (strcmp(arg[iarg + 1], "explicit") == 0)
        explicit_images = true;
      else
        error->all(FLERR, "pair_style physnet: images must be 'shift' or 'explicit', not '" +
                              std::string(arg[iarg + 1]) + "'");
      iarg += 2;
    } else {
      error->all(FLERR, "pair_style physnet: unknown argument '" + std::string(arg[iarg]) +
                            "'; usage: pair_style physnet [images shift|explicit]");
    }
  }
  // the virial is sum r (x) f only when every image is its own node (see the top of this file)
  no_virial_fdotr_compute = explicit_images ? 0 : 1;
}

/* ----------------------------------------------------------------------
   LAMMPS unit style -> conversion factors from the model's units
------------------------------------------------------------------------- */

void PairPhysnet::set_unit_factors(const std::string &energy_unit, const std::string &length_unit,
                                   const std::string &energy_to_ev, const std::string &length_to_angstrom)
{
  // LAMMPS energy and length of the supported unit styles (https://docs.lammps.org/units.html)
  const std::string style = update->unit_style;
  std::string lmp_energy;
  if (style == "metal")
    lmp_energy = "eV";
  else if (style == "real")
    lmp_energy = "kcal/mol";
  else
    error->all(FLERR, "pair_style physnet supports 'units metal' and 'units real', not 'units " + style +
                   "'; change the units command");
  // the file's own factors (metadata energy_to_eV, length_to_angstrom) win over the table, which
  // serves files that lack them
  double ev_per_energy = 0.0, angstrom_per_length = 0.0;
  auto e = EV_PER_UNIT.find(energy_unit);
  auto l = ANGSTROM_PER_UNIT.find(length_unit);
  if (e != EV_PER_UNIT.end()) ev_per_energy = e->second;
  if (l != ANGSTROM_PER_UNIT.end()) angstrom_per_length = l->second;
  try {
    if (!energy_to_ev.empty()) ev_per_energy = std::stod(energy_to_ev);
    if (!length_to_angstrom.empty()) angstrom_per_length = std::stod(length_to_angstrom);
  } catch (const std::exception &) {
    error->all(FLERR, "pair_style physnet: " + model_path + " has unreadable energy_to_eV '" + energy_to_ev +
                   "' or length_to_angstrom '" + length_to_angstrom + "'");
  }
  if (!(ev_per_energy > 0.0))
    error->all(FLERR, "pair_style physnet: " + model_path + " has energy unit '" + energy_unit +
                   "', which this pair style cannot convert (known: eV meV kcal/mol kJ/mol Hartree Ha Ry)");
  if (!(angstrom_per_length > 0.0))
    error->all(FLERR, "pair_style physnet: " + model_path + " has length unit '" + length_unit +
                   "', which this pair style cannot convert (known: Å Angstrom A Bohr nm pm)");
  energy_to_lammps = ev_per_energy / EV_PER_UNIT.at(lmp_energy);
  length_to_model = 1.0 / angstrom_per_length;    // both LAMMPS unit styles measure length in Å
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.pt2 El1 El2 ... (one element per atom type)
------------------------------------------------------------------------- */

void PairPhysnet::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff for physnet: expected 'pair_coeff * * model.pt2' followed by one element "
                      "per atom type (" +
                          std::to_string(ntypes) + " types), got " + std::to_string(narg) + " arguments");
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for physnet must start with '* *' (one model for all type pairs)");
  model_path = arg[2];

  // 1. the file exists and is a physnet export: read only the metadata first, so that a wrong file
  //    gives one clear error instead of a libtorch backtrace.
  if (!std::ifstream(model_path).good())
    error->all(FLERR, "pair_coeff for physnet: cannot open model file '" + model_path +
                          "'; give the path of a .pt2 written by 'physnet export'");
  std::unordered_map<std::string, std::string> meta;
  try {
    meta = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(model_path, "model");
  } catch (const std::exception &ex) {
    error->all(FLERR, "pair_coeff for physnet: '" + model_path +
                          "' is not a physnet export (not an AOTInductor .pt2 package: " + first_line(ex.what()) +
                          "); write one with 'physnet export'");
  }
  if (meta.count("format") == 0 || meta["format"] != "physnet.export/1")
    error->all(FLERR, "pair_coeff for physnet: '" + model_path + "' is not a physnet export (metadata format '" +
                          (meta.count("format") ? meta["format"] : std::string("missing")) +
                          "', expected 'physnet.export/1'); write one with 'physnet export'");
  for (const char *key : {"species", "atomic_numbers", "cutoff", "interaction_range", "energy_unit",
                          "length_unit", "dtype", "per_atom"})
    if (meta.count(key) == 0)
      error->all(FLERR, "pair_coeff for physnet: '" + model_path + "' lacks the metadata key '" + key +
                            "'; re-export it with a current 'physnet export'");
  if (meta["per_atom"] != "1")
    error->all(FLERR, "pair_coeff for physnet: '" + model_path + "' (model " + meta["model"] +
                          ") is a per-graph model without per-atom energies (per_atom=" + meta["per_atom"] +
                          "), which cannot be split over atoms and MPI ranks; use it from Python instead");
  if (meta.count("device") && meta["device"] != "cpu")
    error->all(FLERR, "pair_coeff for physnet: '" + model_path + "' was compiled for device '" + meta["device"] +
                          "'; pair_style physnet runs CPU exports (physnet export --device cpu)");
  if (meta["dtype"] != "float64" && meta["dtype"] != "float32")
    error->all(FLERR, "pair_coeff for physnet: '" + model_path + "' has unsupported dtype '" + meta["dtype"] + "'");
  single_precision = meta["dtype"] == "float32";

  // 2. units: LAMMPS's unit style must be one the model can be converted to
  set_unit_factors(meta["energy_unit"], meta["length_unit"], meta.count("energy_to_eV") ? meta["energy_to_eV"] : "",
                   meta.count("length_to_angstrom") ? meta["length_to_angstrom"] : "");
  try {
    cutoff = std::stod(meta["cutoff"]) / length_to_model;
    interaction_range = std::stod(meta["interaction_range"]) / length_to_model;
  } catch (const std::exception &) {
    error->all(FLERR, "pair_coeff for physnet: '" + model_path + "' has unreadable cutoff '" + meta["cutoff"] +
                          "' or interaction_range '" + meta["interaction_range"] + "'");
  }
  if (!(cutoff > 0.0) || interaction_range < cutoff)
    error->all(FLERR, "pair_coeff for physnet: '" + model_path + "' needs cutoff > 0 and interaction_range >= cutoff");

  // 3. elements: map each LAMMPS type to the model's atomic number
  const auto species = split_words(meta["species"]);
  const auto numbers = split_words(meta["atomic_numbers"]);
  if (species.size() != numbers.size() || species.empty())
    error->all(FLERR, "pair_coeff for physnet: '" + model_path + "' has inconsistent species / atomic_numbers metadata");
  for (int itype = 1; itype <= ntypes; itype++) {
    const std::string element = arg[2 + itype];
    auto it = std::find(species.begin(), species.end(), element);
    if (it == species.end())
      error->all(FLERR, "pair_coeff for physnet: element '" + element + "' (atom type " + std::to_string(itype) +
                            ") is not known to " + model_path + ", which knows: " + meta["species"]);
    type2z[itype] = std::stol(numbers[it - species.begin()]);
  }

  // 4. liblammps.so of the wheel exports a reference (netlib) dgemm_; loaded before libtorch, it
  //    replaces MKL's dgemm_ inside libtorch and float64 models run about 2x slower. Say so once.
  if (comm->me == 0) {
    Dl_info info;
    void *dgemm = dlsym(RTLD_DEFAULT, "dgemm_");
    if (dgemm && dladdr(dgemm, &info) && info.dli_fname && strstr(info.dli_fname, "liblammps"))
      error->warning(FLERR, "pair_style physnet: BLAS dgemm_ comes from liblammps (reference BLAS), not "
                            "libtorch's MKL; float64 models run about 2x slower. Start LAMMPS with "
                            "LD_PRELOAD=<torch>/lib/libtorch_cpu.so (physnet.export.lammps.lammps_env does)");
  }

  // 5. load the compiled model (every rank holds its own copy)
  try {
    model = std::make_unique<torch::inductor::AOTIModelPackageLoader>(model_path, "model");
  } catch (const std::exception &ex) {
    error->all(FLERR, "pair_coeff for physnet: cannot load '" + model_path + "': " + first_line(ex.what()));
  }
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style physnet: model " + meta["model"] + " from " + model_path + " (" +
                            meta["dtype"] + ", cutoff " + std::to_string(cutoff) + ", interaction range " +
                            std::to_string(interaction_range) + " in LAMMPS length units, species " +
                            meta["species"] + ")\n");

  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

/* ---------------------------------------------------------------------- */

void PairPhysnet::init_style()
{
  if (!model) error->all(FLERR, "pair_style physnet: no model; add 'pair_coeff * * model.pt2 <elements>'");
  // forces on ghost atoms must be summed onto their owners by reverse communication
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style physnet requires 'newton on' (forces on ghost atoms are sent back to their owners)");
  // the widened ghost shell below is the single-cutoff communication mode's user cutoff
  if (comm->mode != Comm::SINGLE)
    error->all(FLERR, "pair_style physnet requires 'comm_modify mode single'");
  if (!explicit_images && !atom->tag_enable)
    error->all(FLERR, "pair_style physnet needs atom IDs to join periodic images (atom_modify id yes), "
                      "or 'pair_style physnet images explicit'");
  std::string style = update->unit_style;
  if (style != "metal" && style != "real")
    error->all(FLERR, "pair_style physnet supports 'units metal' and 'units real', not 'units " + style + "'");

  // full neighbour list (i->j and j->i) that also has lists for ghost atoms
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);

  // ghosts must reach interaction_range from every local atom at any time between two
  // neighbour-list builds; atoms move at most skin/2 each in that time (comm_modify cutoff, documented
  // as the "ghost cutoff"; Comm::get_comm_cutoff takes the max with the neighbour cutoff + skin).
  comm->cutghostuser = std::max(comm->cutghostuser, interaction_range + neighbor->skin);
}

double PairPhysnet::init_one(int i, int j)
{
  // neighbours of ghosts within the edge cutoff (+ skin, added by Neighbor)
  cutghost[i][j] = cutghost[j][i] = cutoff;
  return cutoff;
}

/* ---------------------------------------------------------------------- */

void PairPhysnet::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom)
    error->all(FLERR, "pair_style physnet does not compute per-atom virials (compute stress/atom); "
                      "remove that compute");

  const int nlocal = atom->nlocal;
  // A rank that owns no atoms contributes nothing; it still takes part in every communication,
  // which LAMMPS does outside compute().
  if (nlocal == 0) return;

  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;

  // 1. Which atoms the local energies can see, by a breadth-first search over the neighbour lists
  //    (local and ghost atoms both have lists): L = ceil(interaction_range / cutoff) hops. Each graph
  //    node is keyed by the atom ID (images shift: all images of an atom are one node, represented by
  //    the image found first, i.e. nearest in hops) or by the LAMMPS index (images explicit).
  //    LAMMPS's lists include the skin, so distances are checked against the cutoff here.
  const int nhops = std::max(1, (int) std::ceil(interaction_range / cutoff - 1e-6));
  const double cutsq_edge = cutoff * cutoff;
  const tagint *tag = atom->tag;
  auto within_cutoff = [&](int i, int j) {
    const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
    return dx * dx + dy * dy + dz * dz < cutsq_edge;
  };
  auto key = [&](int i) -> int64_t { return explicit_images ? (int64_t) i : (int64_t) tag[i]; };
  std::unordered_map<int64_t, int64_t> node_of;    // key -> graph node
  node_of.reserve(4 * (size_t) nlocal);
  std::vector<int> kept;    // LAMMPS index of each node's representative image; local atoms first
  kept.reserve(4 * (size_t) nlocal);
  for (int i = 0; i < nlocal; i++) {
    node_of[key(i)] = i;
    kept.push_back(i);
  }
  size_t frontier_begin = 0, ncentres = 0;
  for (int h = 1; h <= nhops; h++) {
    const size_t frontier_end = kept.size();
    if (h == nhops) ncentres = frontier_end;    // nodes up to L - 1 hops get edges
    for (size_t k = frontier_begin; k < frontier_end; k++) {
      const int i = kept[k];
      const int *jlist = list->firstneigh[i];
      const int jnum = list->numneigh[i];
      for (int jj = 0; jj < jnum; jj++) {
        const int j = jlist[jj] & NEIGHMASK;
        if (within_cutoff(i, j) && node_of.emplace(key(j), (int64_t) kept.size()).second) kept.push_back(j);
      }
    }
    frontier_begin = frontier_end;
  }
  const int64_t nnodes = (int64_t) kept.size();

  //    the box as lattice vectors (rows a, b, c of LAMMPS's restricted triclinic cell,
  //    https://docs.lammps.org/Howto_triclinic.html): h = xprd yprd zprd yz xz xy
  const double *hbox = domain->h;
  const double cell_lmp[3][3] = {{hbox[0], 0.0, 0.0}, {hbox[5], hbox[1], 0.0}, {hbox[4], hbox[3], hbox[2]}};

  //    edges i -> j (full list: j -> i comes from j's own list) from each centre's representative;
  //    the shift s solves x_j - x_rep(j) = s @ cell (i is its node's representative; zero shifts for
  //    explicit images), so that pos[j] - pos[i] + s @ cell = x_j - x_i
  std::vector<int64_t> centre, neighbour, shift;
  centre.reserve(64 * ncentres);
  neighbour.reserve(64 * ncentres);
  if (!explicit_images) shift.reserve(3 * 64 * ncentres);
  for (size_t k = 0; k < ncentres; k++) {
    const int i = kept[k];
    const int *jlist = list->firstneigh[i];
    const int jnum = list->numneigh[i];
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      if (!within_cutoff(i, j)) continue;
      const int64_t nj = node_of.at(key(j));
      centre.push_back((int64_t) k);
      neighbour.push_back(nj);
      if (!explicit_images) {
        const int rj = kept[nj];
        double d[3];
        for (int c = 0; c < 3; c++) d[c] = x[j][c] - x[rj][c];
        const double sc = std::round(d[2] / cell_lmp[2][2]);
        const double sb = std::round((d[1] - sc * cell_lmp[2][1]) / cell_lmp[1][1]);
        const double sa = std::round((d[0] - sb * cell_lmp[1][0] - sc * cell_lmp[2][0]) / cell_lmp[0][0]);
        shift.push_back((int64_t) sa);
        shift.push_back((int64_t) sb);
        shift.push_back((int64_t) sc);
      }
    }
  }
  const int64_t nedges = (int64_t) centre.size();

  // 2. model inputs, in the model's units and dtype
  const auto real = single_precision ? at::kFloat : at::kDouble;
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor pos_lmp = at::empty({nnodes, 3}, f64);
  at::Tensor z = at::empty({nnodes}, i64);
  auto p_a = pos_lmp.accessor<double, 2>();
  auto z_a = z.accessor<int64_t, 1>();
  for (int64_t k = 0; k < nnodes; k++) {
    const int i = kept[k];
    for (int d = 0; d < 3; d++) p_a[k][d] = x[i][d];
    z_a[k] = type2z[type[i]];
  }
  at::Tensor pos = pos_lmp.mul(length_to_model).to(real);
  at::Tensor batch = at::zeros({nnodes}, i64);
  at::Tensor cell = at::zeros({1, 3, 3}, f64);
  if (!explicit_images) {
    auto c_a = cell.accessor<double, 3>();
    for (int a = 0; a < 3; a++)
      for (int b = 0; b < 3; b++) c_a[0][a][b] = cell_lmp[a][b] * length_to_model;
  }
  cell = cell.to(real);
  at::Tensor edge_index = at::empty({2, nedges}, i64);
  at::Tensor edge_shift = at::zeros({nedges, 3}, i64);
  if (nedges > 0) {
    std::memcpy(edge_index[0].data_ptr<int64_t>(), centre.data(), nedges * sizeof(int64_t));
    std::memcpy(edge_index[1].data_ptr<int64_t>(), neighbour.data(), nedges * sizeof(int64_t));
    if (!explicit_images) std::memcpy(edge_shift.data_ptr<int64_t>(), shift.data(), 3 * nedges * sizeof(int64_t));
  }
  at::Tensor weight = at::zeros({nnodes}, at::TensorOptions().dtype(real));
  weight.narrow(0, 0, nlocal).fill_(1.0);

  // 3. run the compiled model
  std::vector<at::Tensor> out;
  try {
    out = model->run({pos, z, batch, cell, edge_index, edge_shift, weight});
  } catch (const std::exception &ex) {
    error->one(FLERR, "pair_style physnet: the model failed on " + std::to_string(nnodes) + " atoms (" +
                          std::to_string(nlocal) + " local) and " + std::to_string(nedges) +
                          " edges: " + first_line(ex.what()));
  }
  if (out.size() != 4)
    error->one(FLERR, "pair_style physnet: the model returned " + std::to_string(out.size()) +
                          " outputs, expected 4 (energy, atomic_energy, forces, virial)");
  const at::Tensor energy = out[0].to(at::kDouble).contiguous();
  const at::Tensor atomic_energy = out[1].to(at::kDouble).contiguous();
  const at::Tensor forces = out[2].to(at::kDouble).contiguous();
  const at::Tensor virial_model = out[3].to(at::kDouble).contiguous();

  // 4. forces on local and ghost atoms (model energy / model length -> LAMMPS units);
  //    ghost forces are summed onto owners by reverse communication after compute()
  const double force_factor = energy_to_lammps * length_to_model;
  auto f_a = forces.accessor<double, 2>();
  for (int64_t k = 0; k < nnodes; k++) {
    const int i = kept[k];
    for (int d = 0; d < 3; d++) f[i][d] += force_factor * f_a[k][d];
  }

  // 5. energies: only local atoms (weight 1) count, so the sum over ranks counts each atom once
  if (eflag_global) eng_vdwl += energy_to_lammps * energy.item<double>();
  if (eflag_atom) {
    auto e_a = atomic_energy.accessor<double, 1>();
    for (int i = 0; i < nlocal; i++) eatom[i] += energy_to_lammps * e_a[i];
  }

  // 6. virial: sum r (x) f over local + ghost atoms (explicit images), or the model's -dE/d(strain)
  if (vflag_fdotr) {
    virial_fdotr_compute();
  } else if (vflag_global) {
    auto v = virial_model.accessor<double, 3>();
    virial[0] += energy_to_lammps * v[0][0][0];
    virial[1] += energy_to_lammps * v[0][1][1];
    virial[2] += energy_to_lammps * v[0][2][2];
    virial[3] += energy_to_lammps * v[0][0][1];
    virial[4] += energy_to_lammps * v[0][0][2];
    virial[5] += energy_to_lammps * v[0][1][2];
  }
}
