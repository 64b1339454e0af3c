"""A real single-node Slurm for the tests: Debian's ``slurm-wlm`` and ``munge``, installed when missing (as root, with
apt-get), configured for this host's CPUs and memory, started (``munged``, ``slurmctld``, ``slurmd``) and stopped.

Nothing is mocked: ``sbatch``, ``srun``, job arrays, ``--dependency=afterok``, ``scancel`` and ``--signal`` are the
scheduler's own. The configuration lives in a temporary directory named by ``SLURM_CONF`` (the machine's own
``/etc/slurm`` is never touched). Tests that need it take the session fixture ``slurm`` (tests/conftest.py); they
skip, saying why, only where the packages cannot be installed or started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("sbatch", "srun", "squeue", "scancel", "sacct", "scontrol", "slurmctld", "slurmd", "munged")
START_TIMEOUT_S = 30
# Slurm's job states a job does not leave (squeue(1) "JOB STATE CODES"; requeued jobs go back to PENDING first)
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                          "DEADLINE", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"})


class SlurmUnavailable(Exception):
    """Slurm cannot be installed or started here; the message says why (the tests skip with it)."""


def _missing() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def install() -> None:
    """apt-get install the packages when a binary is missing (root only)."""
    if not _missing():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"Slurm binaries {_missing()} missing and cannot apt-get install {PACKAGES} "
                               "(needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    if _missing():
        raise SlurmUnavailable(f"installed {PACKAGES} but {_missing()} are still missing")


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _memory_mib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024 * 9 // 10  # a little under the total, as slurmd measures it
    return 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(root: Path) -> Path:
    """``slurm.conf`` for this host under ``root`` (state, spool, pid and log files there too). The daemons listen
    on free ports, so two test sessions on one machine run two independent clusters."""
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(f"""ClusterName=local
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
MinJobAge=300
KillWait=5
NodeName={host} CPUs={cpus} RealMemory={_memory_mib()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")
    return conf


def job_fields(line: str) -> dict[str, str]:
    """One ``scontrol -o show job`` record as ``{field: value}``. The first occurrence of a name wins: the record's
    own fields come before ``Command=``, whose value carries the batch script's arguments (``--set a=b``), which
    would otherwise override them."""
    fields: dict[str, str] = {}
    for token in line.split():
        key, eq, value = token.partition("=")
        if eq and key not in fields:
            fields[key] = value
    return fields


@dataclass
class SlurmCluster:
    """A started single-node cluster. ``env`` is the environment its client commands need (``SLURM_CONF``)."""

    root: Path
    conf: Path
    munged_pid: int | None = None

    @property
    def env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        return dict(clean, SLURM_CONF=str(self.conf))

    def run(self, *cmd: str, check: bool = True, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), env={**self.env, **env}, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sbatch(self, *args: str, cwd: str | Path | None = None, **env: str) -> int:
        """Submit (``--parsable``); returns the job id."""
        proc = subprocess.run(["sbatch", "--parsable", *args], env={**self.env, **env}, cwd=cwd,
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return int(proc.stdout.strip().split(";")[0])

    def state(self, job_id: int | str) -> dict[str, str]:
        """``{job or array task id: state}`` from scontrol (jobs are kept MinJobAge seconds after they end)."""
        proc = self.run("scontrol", "-o", "show", "job", str(job_id), check=False)
        out = {}
        for line in proc.stdout.splitlines():
            fields = job_fields(line)
            if not fields.get("JobId") or not fields.get("JobState"):
                continue  # not a job record (a blank or message line): it says nothing about the job's state
            key = fields["JobId"]
            if fields.get("ArrayTaskId"):
                key = f"{fields.get('ArrayJobId')}_{fields['ArrayTaskId']}"
            out[key] = fields.get("JobState", "")
        return out

    def wait(self, *job_ids: int, timeout: float = 300) -> None:
        """Until every job (all its array tasks) has left the PENDING/RUNNING/... states."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # every job must be seen, and every record of it (each array task) in a state it does not leave: a
            # list of the ends, not of the active states, since a running job passes through transient ones
            # (SIGNALING while slurmctld delivers --signal, STAGE_OUT, REQUEUE_HOLD, ...)
            seen = [self.state(j) for j in job_ids]
            if all(seen) and all(s in FINAL_STATES for states in seen for s in states.values()):
                return
            time.sleep(0.3)
        raise TimeoutError(f"jobs {job_ids} still active after {timeout} s: {[self.state(j) for j in job_ids]}")

    def stop(self) -> None:
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True, timeout=30)
        for pid_file in ("slurmctld.pid", "slurmd.pid"):
            _kill_pidfile(self.root / pid_file)
        if self.munged_pid:
            _kill(self.munged_pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _kill_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    _kill(pid)


def start(root: Path) -> SlurmCluster:
    """Install when needed, configure under ``root`` and start the daemons; raises :class:`SlurmUnavailable`."""
    install()
    if os.geteuid() != 0:
        raise SlurmUnavailable("starting slurmctld/slurmd as configured here needs root")
    conf = write_config(root)
    if not Path("/etc/munge/munge.key").exists():
        subprocess.run([_sbin("mungekey"), "-c"], capture_output=True, timeout=30)
    munge_dir = root / "munge"
    munge_dir.mkdir(exist_ok=True)
    socket_path = munge_dir / "munge.socket"
    # our own munged on our own socket: a munged already running for the machine is left alone
    subprocess.run([_sbin("munged"), "--force", f"--socket={socket_path}", f"--pid-file={munge_dir}/munged.pid",
                    f"--log-file={munge_dir}/munged.log", f"--seed-file={munge_dir}/munged.seed"],
                   capture_output=True, timeout=30, check=False)
    try:
        munged_pid = int((munge_dir / "munged.pid").read_text().strip())
    except (OSError, ValueError) as e:
        raise SlurmUnavailable(f"munged did not start (log: {munge_dir}/munged.log)") from e
    with open(conf, "a") as f:
        f.write(f"AuthInfo=socket={socket_path}\n")
    cluster = SlurmCluster(root, conf, munged_pid)
    env = cluster.env
    for daemon in ("slurmctld", "slurmd"):
        proc = subprocess.run([_sbin(daemon), "-f", str(conf)], env=env, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            cluster.stop()
            raise SlurmUnavailable(f"{daemon} did not start ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip() in ("idle", "mixed", "allocated"):
            return cluster
        time.sleep(0.2)
    cluster.stop()
    raise SlurmUnavailable(f"the node did not become idle in {START_TIMEOUT_S} s (logs under {root})")
