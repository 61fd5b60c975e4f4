"""SLURM environment detection: turn the variables ``srun`` sets into the ones ``torch.distributed`` reads.

``srun python pretrain/pretrain.py ...`` starts one task per process and sets ``SLURM_PROCID`` (global rank),
``SLURM_LOCALID`` (rank on the node), ``SLURM_STEP_NUM_TASKS``/``SLURM_NTASKS`` (world size) and the node list in
SLURM's compressed form (``node[01-04,07]``). :func:`slurm_launch_env` derives ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` (the first node, unless set) and ``MASTER_PORT`` (unless set: derived from
``SLURM_JOB_ID`` so that every task picks the same one). :func:`maedfer.engine.distributed.init_distributed` uses it
only when no launcher variable (``RANK``/``WORLD_SIZE``) is present, so ``srun torchrun ...`` keeps torchrun's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping

__all__ = [
    "LAUNCHER_VARS",
    "MASTER_PORT_BASE",
    "MASTER_PORT_SPAN",
    "adopt_slurm_env",
    "expand_nodelist",
    "slurm_launch_env",
]

logger = logging.getLogger(__name__)

#: Variables set by torchrun / the deepspeed launcher; any of them present means SLURM's are not used.
LAUNCHER_VARS: tuple[str, ...] = ("RANK", "WORLD_SIZE")
#: ``MASTER_PORT`` derived from the job id lies in ``[MASTER_PORT_BASE, MASTER_PORT_BASE + MASTER_PORT_SPAN)``,
#: below Linux's ephemeral port range (32768 and up).
MASTER_PORT_BASE = 15000
MASTER_PORT_SPAN = 16384

_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top_level(text: str, source: str) -> list[str]:
    """Splits ``text`` at the commas outside square brackets.

    Raises:
        ValueError: For unbalanced brackets.
    """
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"{source}: nested '[' in node list {text!r}.")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"{source}: unbalanced ']' in node list {text!r}.")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"{source}: unbalanced '[' in node list {text!r}.")
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _expand_ranges(body: str, source: str) -> list[str]:
    """``"01-03,07"`` -> ``["01", "02", "03", "07"]`` (zero padding of the range start is kept)."""
    values: list[str] = []
    for item in body.split(","):
        match = _RANGE_RE.match(item.strip())
        if match is None:
            raise ValueError(f"{source}: cannot read the range {item!r} in '[{body}]'.")
        start, end = match.group(1), match.group(2)
        if end is None:
            values.append(start)
            continue
        low, high = int(start), int(end)
        if high < low:
            raise ValueError(f"{source}: the range {item!r} in '[{body}]' runs backwards.")
        width = len(start)
        values.extend(str(number).zfill(width) for number in range(low, high + 1))
    return values


def expand_nodelist(nodelist: str, source: str = "SLURM node list") -> list[str]:
    """Expands SLURM's compressed host list, in order.

    ``"node[01-03,07],gpu-a[1-2]-ib"`` -> ``["node01", "node02", "node03", "node07", "gpu-a1-ib", "gpu-a2-ib"]``;
    several bracket groups in one name give their product in order (``"r[1-2]n[1-2]"`` -> ``r1n1, r1n2, r2n1,
    r2n2``).

    Args:
        nodelist: The value of ``SLURM_JOB_NODELIST`` (or ``SLURM_STEP_NODELIST``/``SLURM_NODELIST``).
        source: Named in error messages (the variable).

    Returns:
        The host names.

    Raises:
        ValueError: For an empty list, unbalanced brackets or a range that is not ``a`` or ``a-b`` with ``a <= b``.
    """
    hosts: list[str] = []
    for item in _split_top_level(nodelist, source):
        names = [""]
        for piece in re.split(r"(\[[^\]]*\])", item):
            if piece.startswith("["):
                options = _expand_ranges(piece[1:-1], source)
            else:
                options = [piece]
            names = [name + option for name in names for option in options]
        hosts.extend(names)
    if not hosts:
        raise ValueError(f"{source}: the node list {nodelist!r} names no host.")
    return hosts


def _int_var(environ: Mapping[str, str], name: str) -> int | None:
    """A non-negative integer variable, ``None`` when absent or empty.

    Raises:
        ValueError: If the value is not a non-negative integer.
    """
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"Environment variable {name}={raw!r} is not a non-negative integer.")
    return int(raw)


def slurm_launch_env(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The launcher variables that a SLURM task implies.

    Args:
        environ: The process environment.

    Returns:
        ``{"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}`` as strings, or ``None`` when the
        process is not a SLURM task (no ``SLURM_PROCID``) or a launcher already set ``RANK``/``WORLD_SIZE``.
        The world size is ``SLURM_STEP_NUM_TASKS`` (the ``srun`` step), else ``SLURM_NTASKS``; the local rank
        ``SLURM_LOCALID`` (``0`` when absent). ``MASTER_ADDR``/``MASTER_PORT`` already in the environment are kept;
        otherwise the address is the first host of ``SLURM_STEP_NODELIST``, ``SLURM_JOB_NODELIST`` or
        ``SLURM_NODELIST`` (the first one set) and the port ``MASTER_PORT_BASE + SLURM_JOB_ID % MASTER_PORT_SPAN``.

    Raises:
        ValueError: For malformed variables, a rank outside the world, a world size of several tasks with no node
            list or job id to rendezvous with.
    """
    if any(environ.get(name, "").strip() for name in LAUNCHER_VARS):
        return None
    rank = _int_var(environ, "SLURM_PROCID")
    if rank is None:
        return None
    world_name = "SLURM_STEP_NUM_TASKS" if environ.get("SLURM_STEP_NUM_TASKS", "").strip() else "SLURM_NTASKS"
    world_size = _int_var(environ, world_name) or 1
    if rank >= world_size:
        raise ValueError(f"SLURM_PROCID={rank} must be smaller than {world_name}={world_size}.")
    local_rank = _int_var(environ, "SLURM_LOCALID") or 0
    result = {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(local_rank)}

    master_addr = environ.get("MASTER_ADDR", "").strip()
    if not master_addr:
        for name in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
            if environ.get(name, "").strip():
                master_addr = expand_nodelist(environ[name], name)[0]
                break
    master_port = environ.get("MASTER_PORT", "").strip()
    if not master_port:
        job_id = _int_var(environ, "SLURM_JOB_ID")
        if job_id is None:
            job_id = _int_var(environ, "SLURM_JOBID")
        if job_id is not None:
            master_port = str(MASTER_PORT_BASE + job_id % MASTER_PORT_SPAN)
    if world_size > 1:
        if not master_addr:
            raise ValueError("SLURM task with several tasks but no MASTER_ADDR and no SLURM_JOB_NODELIST to take the "
                             "first node from; export MASTER_ADDR.")
        if not master_port:
            raise ValueError("SLURM task with several tasks but no MASTER_PORT and no SLURM_JOB_ID to derive it "
                             "from; export MASTER_PORT.")
    if master_addr:
        result["MASTER_ADDR"] = master_addr
    if master_port:
        result["MASTER_PORT"] = master_port
    return result


def adopt_slurm_env(environ: MutableMapping[str, str]) -> dict[str, str] | None:
    """Writes :func:`slurm_launch_env`'s variables into ``environ`` (so DeepSpeed and ``env://`` see them too).

    Args:
        environ: The environment to read and update (``os.environ``).

    Returns:
        The variables set, or ``None`` when this is not a SLURM task or a launcher's variables are present.
    """
    derived = slurm_launch_env(environ)
    if derived is None:
        return None
    environ.update(derived)
    logger.info("SLURM task: rank %s of %s (local rank %s), rendezvous at %s:%s.", derived["RANK"],
                derived["WORLD_SIZE"], derived["LOCAL_RANK"], derived.get("MASTER_ADDR", "-"),
                derived.get("MASTER_PORT", "-"))
    return derived
