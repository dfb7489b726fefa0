"""The JSON-line request loop and the request-to-Atoms helper shared by the peer workers
(benchmark_peers_worker.py, benchmark_e3_peers_worker.py), which run in the peers' own venvs
without physnet.

Each request is one JSON object per line on stdin with an ``op`` key; each reply is one JSON line
on stdout: ``{"ok": true, ...}`` or ``{"ok": false, "error": ..., "trace": ...}``. ``{"op": "quit"}``
ends the loop. A worker script imports this module from its own folder (``scripts/``, which Python
puts first on ``sys.path`` when it runs a script).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def serve(ops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Answer requests from stdin with ``ops[request["op"]](request)`` until EOF or ``quit``."""
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not corrupt the JSON channel
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("op") == "quit":
            break
        try:
            reply = {"ok": True, **ops[req["op"]](req)}
        except Exception as exc:  # reported to the parent, which raises
            import traceback

            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def atoms_from_request(structure: dict[str, Any]) -> Any:
    """ASE Atoms from a request's ``structure`` (numbers, positions [n, 3] in Å, cell [3, 3] in Å,
    pbc, and optional momenta [n, 3] in ASE units)."""
    from ase import Atoms

    atoms = Atoms(
        numbers=structure["numbers"],
        positions=np.asarray(structure["positions"], dtype=np.float64),
        cell=np.asarray(structure["cell"], dtype=np.float64),
        pbc=structure["pbc"],
    )
    if structure.get("momenta") is not None:
        atoms.set_momenta(np.asarray(structure["momenta"], dtype=np.float64))
    return atoms


def timed_md(structure: dict[str, Any], calc: Any, steps: int, timestep_fs: float = 0.5) -> float:
    """Seconds for ``steps`` ASE velocity-Verlet steps of ``timestep_fs`` fs from ``structure``
    (as :func:`atoms_from_request` reads it) with the ASE calculator ``calc``."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms = atoms_from_request(structure)
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep_fs * units.fs)
    start = time.perf_counter()
    dyn.run(steps)
    return time.perf_counter() - start
