"""A real single-node SLURM cluster on localhost for the tests (munge + slurmctld + slurmd).

Needs Debian's `slurmctld slurmd slurm-client munge` (``.ci/run`` installs them) and root.
The cluster's config, state and logs live in a temporary folder; clients find it through
SLURM_CONF. Completed jobs are recorded by the scheduler itself in a job-completion log
(``jobcomp/filetxt``), which is how the tests prove that jobs went through sbatch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


def missing_tools() -> list[str]:
    return [t for t in REQUIRED if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    jobcomp: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def completed_jobs(self) -> list[dict[str, str]]:
        """The scheduler's own record of finished jobs: one dict of KEY=VALUE fields per job."""
        if not self.jobcomp.exists():
            return []
        jobs = []
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if fields:
                jobs.append(fields)
        return jobs


SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by videmotion's test fixture"


def _install_system_conf(conf: Path) -> None:
    """Point /etc/slurm/slurm.conf at our config: `srun` inside a job step ignores
    SLURM_CONF from the submitting shell and reads the default path. Only a missing file
    or one this fixture wrote earlier is replaced, never a real cluster's config."""
    if SYSTEM_CONF.exists() and MARKER not in SYSTEM_CONF.read_text(errors="replace"):
        raise RuntimeError(f"{SYSTEM_CONF} belongs to another SLURM installation; not touching it")
    SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONF.write_text(conf.read_text())


def _write_conf(root: Path) -> Path:
    cpus = os.cpu_count() or 1
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.85)
    (root / "state").mkdir(parents=True, exist_ok=True)
    (root / "spool").mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(
        f"""{MARKER}
ClusterName=videmotion-test
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
ReturnToService=2
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _start_munge() -> None:
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)


def start(root: Path, timeout: float = 60.0) -> SlurmCluster:
    """Start munge, slurmctld and slurmd; wait until the node is idle."""
    conf = _write_conf(root)
    cluster = SlurmCluster(root, conf, root / "jobcomp.log")
    _install_system_conf(conf)
    _start_munge()
    env = cluster.env
    subprocess.run(["/usr/sbin/slurmctld", "-f", str(conf)], check=True, env=env)
    subprocess.run(["/usr/sbin/slurmd", "-f", str(conf), "-N", "localhost"], check=True, env=env)
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env)
        state = out.stdout.strip()
        if state.startswith("idle"):
            return cluster
        time.sleep(1)
    stop(cluster)
    raise RuntimeError(f"SLURM node did not become idle (state {state!r}); see {root}/slurmctld.log and slurmd.log")


def stop(cluster: SlurmCluster) -> None:
    """Stop the daemons this cluster started and remove our system config (munge is left running: it is shared)."""
    for name in ("slurmd", "slurmctld"):
        pid_file = cluster.root / f"{name}.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass
    time.sleep(1)
    if SYSTEM_CONF.exists() and MARKER in SYSTEM_CONF.read_text(errors="replace"):
        SYSTEM_CONF.unlink()
