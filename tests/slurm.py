"""A real one-node SLURM on localhost for the cluster tests: munged, slurmctld and slurmd
with a generated ``slurm.conf`` (CPUs and memory from ``slurmd -C``), all private to one
folder (own munge socket and key, own ports), so nothing of the machine's is touched.

Needs Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them where it runs as root
with apt) and root, since the daemons and the jobs run as root.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel")
PARTITION = "debug"


def missing_reason() -> str | None:
    """Why a real SLURM cannot start here, or None when it can."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the SLURM daemons and jobs run as root; this user is not root"
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return (
            f"SLURM is not installed ({', '.join(absent)} missing): "
            "apt-get install slurm-wlm munge (as .ci/run does)"
        )
    return None


def must_run() -> bool:
    """Under CI, a machine with root and apt must run the real-SLURM tests, not skip them."""
    return (
        os.environ.get("CI") == "true"
        and os.name == "posix"
        and os.geteuid() == 0
        and shutil.which("apt-get") is not None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """``CPUs=.. Boards=.. ... RealMemory=..`` as slurmd measures this machine."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0].split()
    keep = ("CPUs=", "Boards=", "SocketsPerBoard=", "CoresPerSocket=", "ThreadsPerCore=")
    words = [w for w in first if w.startswith(keep)]
    mem = next(w for w in first if w.startswith("RealMemory="))
    # leave the node a little: slurmd refuses a node that reports less than configured
    words.append(f"RealMemory={max(1, int(mem.split('=')[1]) - 256)}")
    return " ".join(words)


@dataclass
class Slurm:
    """A running one-node cluster; ``env`` is what a client needs (``SLURM_CONF``)."""

    root: Path
    conf: Path
    cpus: int
    pids: list[int] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr or r.stdout}")
        return r.stdout

    def sbatch(self, script: Path, *args: str) -> str:
        """Submit ``script``; the job id."""
        return self.run("sbatch", "--parsable", *args, str(script)).strip().split(";")[0]

    def jobs(self) -> list[str]:
        """Ids of the jobs still queued or running (array tasks as ``id_k``)."""
        return self.run("squeue", "--noheader", "--format=%i").split()

    def wait_idle(self, timeout: float = 300) -> None:
        """Until no job is queued or running."""
        deadline = time.time() + timeout
        while self.jobs():
            if time.time() > deadline:
                raise TimeoutError(f"SLURM jobs still running after {timeout} s: {self.jobs()}")
            time.sleep(0.25)

    def stop(self) -> None:
        self.run("scancel", "--full", "--user=root", check=False)
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)


def start_slurm(root: Path) -> Slurm:
    """Start munged, slurmctld and slurmd under ``root`` and wait until the node is idle."""
    root.mkdir(parents=True, exist_ok=True)
    for d in ("munge", "state", "spool", "logs"):
        (root / d).mkdir(exist_ok=True)
    (root / "munge").chmod(0o700)
    key, sock = root / "munge" / "munge.key", root / "munge" / "munge.sock"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
    key.chmod(0o600)
    host = socket.gethostname().split(".")[0]
    node = _node_line()
    cpus = int(next(w for w in node.split() if w.startswith("CPUs=")).split("=")[1])
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=aamflowtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/logs/slurmctld.log
SlurmdLogFile={root}/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
KillWait=2
MinJobAge=300
NodeName={host} NodeAddr=127.0.0.1 {node} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    slurm = Slurm(root=root, conf=conf, cpus=cpus)
    subprocess.run(
        [
            "munged",
            "--force",
            f"--socket={sock}",
            f"--key-file={key}",
            f"--log-file={root}/logs/munged.log",
            f"--pid-file={root}/munge/munged.pid",
            f"--seed-file={root}/munge/munged.seed",
        ],
        check=True,
        capture_output=True,
    )
    slurm.pids.append(int((root / "munge" / "munged.pid").read_text()))
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon, "-f", str(conf)], env=slurm.env, check=True, capture_output=True)
        pid_file = root / f"{daemon}.pid"
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            time.sleep(0.05)
        slurm.pids.append(int(pid_file.read_text()))
    deadline = time.time() + 60
    while "idle" not in slurm.run("sinfo", "--noheader", "--format=%T", check=False):
        if time.time() > deadline:
            slurm.stop()
            log = (root / "logs" / "slurmctld.log").read_text()[-2000:]
            raise RuntimeError(f"the SLURM node did not come up; slurmctld.log ends:\n{log}")
        time.sleep(0.2)
    return slurm
