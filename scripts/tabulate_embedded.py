"""Print the Markdown table of the embedded data sets (for data/README.md) from their sidecars.

Example::

    python scripts/tabulate_embedded.py
"""

from __future__ import annotations

from physnet.data import embedded


def _temperature(meta: dict) -> str:
    prov = meta["provenance"]
    stats = meta.get("statistics", {})
    if "temperatures_K" in prov:
        per_t = stats.get("per_temperature", {})
        return ", ".join(
            f"{t:g} ({per_t[f'{t:g}']['mean_temperature_K']:.0f})" if f"{t:g}" in per_t else f"{t:g}"
            for t in prov["temperatures_K"]
        )
    if prov.get("temperature_K"):
        mean = stats.get("mean_temperature_K")
        return f"{prov['temperature_K']:g}" + (f" ({mean:.0f})" if mean else "")
    return "relaxed (0 K)"


def _atoms(meta: dict) -> str:
    n = meta["n_atoms"]
    return str(n) if isinstance(n, int) else f"{n['min']}-{n['max']}"


def table() -> str:
    """One row per set: file, what, method, frames, atoms, units, temperature, size, command."""
    rows = [
        "| name / file | what | method | frames | atoms | units | T target (mean), K | size | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in embedded.available():
        meta = embedded.info(name)
        prov = meta["provenance"]
        units = ", ".join(
            f"{k} {meta['units'][k].split(' ')[0]}"
            for k in ("energy", "length", "forces", "stress", "dipole")
            if k in meta["units"]
        )
        size = f"{meta['size_bytes'] / 1e6:.2f} MB"
        for extra, about in meta.get("extra_files", {}).items():
            size += f" + {about['size_bytes'] / 1e6:.2f} MB `{extra}`"
        md = ""
        if "timestep_fs" in prov and prov["timestep_fs"]:
            md = f"; Langevin {prov['timestep_fs']:g} fs, stride {prov['stride_steps']}, seed {prov['seed']}"
        rows.append(
            f"| `{name}` / `{meta['file']}` | {meta['description']} | {prov['method'].split(' ')[0]}{md} "
            f"| {meta['n_frames']} | {_atoms(meta)} | {units} | {_temperature(meta)} "
            f"| {size} | `{prov['command']}` |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
