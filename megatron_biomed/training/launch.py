"""How every entry point starts a run (pretraining, fine-tuning, evaluation, generation, conversion): one sequence.

1. :func:`load_run_config` / :func:`validate_run_config`: the config, every choice field checked, the registered
   ones (model family, kernels, task, task-file format) against their registries.
2. :func:`start`: where this process sits (torchrun / SLURM / one process), logging for its rank, the parallel
   layout checked against the world size -- all before any process group exists.
3. The entry point reads and checks its own inputs (tokenizer, data, task), still before any process group.
4. :func:`parallel_session`: the process groups and megatron-core's parallel state, torn down on the way out.

Errors: every seam's error subclasses :class:`megatron_biomed.errors.BiomedError`; :func:`run_main` turns one into
``error: <message>`` on stderr and exit code 2, wherever it is raised. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator

from megatron_biomed import console
from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.loading import load_config, validate
from megatron_biomed.data.tasks import READERS
from megatron_biomed.errors import BiomedError
from megatron_biomed.kernels.registry import KERNEL_PROVIDERS
from megatron_biomed.models.registry import FAMILIES
from megatron_biomed.parallel.env import DistEnv, read_dist_env
from megatron_biomed.parallel.initialize import ParallelContext, initialize_parallel, shutdown_parallel
from megatron_biomed.parallel.layout import validate_layout
from megatron_biomed.training.tasks import TASKS

log = logging.getLogger("megatron_biomed")


def registered_choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of the config fields whose choices are registered names (config/loading.py
    REGISTERED_FIELDS), from each seam's registry."""
    return {
        "model.family": FAMILIES.names(),
        "model.kernels": KERNEL_PROVIDERS.names(),
        "task.name": TASKS.names(),
        "task.format": tuple(READERS),
    }


def load_run_config(
    preset: str | None = None, yaml_path: str | Path | None = None, overrides: Iterable[str] = ()
) -> ExperimentConfig:
    """Preset, YAML file, --set overrides; every choice field checked (ConfigError names each bad one)."""
    return load_config(preset, yaml_path, overrides, registered=registered_choices())


def validate_run_config(cfg: ExperimentConfig, sources: dict[str, str] | None = None) -> ExperimentConfig:
    """Check a config built by hand (e.g. from a checkpoint's run_config.yaml plus overrides) as load_run_config
    does."""
    return validate(cfg, sources, registered_choices())


# megatron-core notices that say nothing about this run (deprecations of APIs we do not choose).
_KNOWN_NOTICES = ("GPTModel IS DEPRECATED", "async save is deprecated")


def _drop_known_notices(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(n in message for n in _KNOWN_NOTICES)


def setup_logging(rank: int, verbose: bool = False) -> None:
    """Our progress lines on rank 0; megatron-core's own INFO chatter only with MEGATRON_BIOMED_VERBOSE=1."""
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[%(asctime)s rank{rank}] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
        force=True,
    )
    if not (verbose or console.verbose()):
        logging.getLogger("megatron").setLevel(logging.WARNING)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_drop_known_notices)
        console.quiet_third_party_notices()


def start(cfg: ExperimentConfig, adjust: Callable[[ExperimentConfig, DistEnv], None] | None = None) -> DistEnv:
    """This process's place in the job, logging for its rank, and ``cfg``'s layout checked for the world size
    (``adjust(cfg, env)`` first fills in what depends on the world size). Raises BiomedError subclasses."""
    env = read_dist_env()
    setup_logging(env.rank)
    if adjust is not None:
        adjust(cfg, env)
    validate_layout(cfg, env.world_size)
    return env


@contextlib.contextmanager
def parallel_session(cfg: ExperimentConfig, env: DistEnv) -> Iterator[ParallelContext]:
    """The process groups and megatron-core's parallel state for ``cfg`` while the block runs; shut down after,
    however it ends."""
    ctx = initialize_parallel(cfg, env)
    try:
        yield ctx
    finally:
        shutdown_parallel()


def run_main(main: Callable[[], int]) -> int:
    """Run an entry point's body: a BiomedError becomes ``error: <message>`` on stderr and exit code 2."""
    try:
        return main()
    except BiomedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
