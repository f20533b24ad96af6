"""A throwaway single-node SLURM cluster for tests: munged, slurmctld and slurmd as child processes.

Debian's `slurm-wlm` (22.05 on bookworm) and `munge`, installed by `ensure_slurm()` when missing and
the tests run as root. Everything the daemons write lives in a fresh directory under /tmp (short,
because munge's and slurmd's unix sockets live there), on ports picked free at start, so that
several clusters on one machine do not meet. No accounting database: jobs stay in slurmctld's memory
for `MinJobAge` seconds (what `squeue` and `scontrol show job` answer from), and slurmctld appends
one line per finished job to a job completion file (`jobcomp/filetxt`).

    with SlurmCluster(log_dir=tmp_path / "slurm") as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env)
        cluster.jobs()  # `scontrol show job` as dicts
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SLURM_COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
# Long enough for a test to read its finished jobs back; also what makes the SLURM executor plugin
# accept `squeue` as its status command (it wants MinJobAge >= 3 x its first status delay).
MIN_JOB_AGE_S = 600


def missing_commands() -> list[str]:
    return [name for name in SLURM_COMMANDS if shutil.which(name) is None]


def ensure_slurm() -> str | None:
    """Install slurm-wlm and munge through apt when missing. Returns why no cluster can be run here
    (slurmd launches jobs as root, and installing needs root too), or None."""
    if os.geteuid() != 0:
        missing = missing_commands()
        if missing:
            return f"SLURM is not installed ({', '.join(missing)} missing) and installing it needs root"
        return "a throwaway SLURM cluster needs root (slurmd runs as root)"
    if not missing_commands():
        return None
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install slurm-wlm with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0 or missing_commands():
        raise RuntimeError(f"installing slurm-wlm failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_records(text: str) -> list[dict[str, str]]:
    """`Key=Value Key=Value ...` lines (scontrol --oneliner, jobcomp/filetxt) as dicts.
    Values holding spaces are cut at the first one; none of the fields tests read has any."""
    records = []
    for line in text.splitlines():
        fields = dict(token.split("=", 1) for token in line.split() if "=" in token)
        if fields:
            records.append(fields)
    return records


def node_hardware() -> str:
    """This machine as a slurm.conf node line (`slurmd -C`), with RealMemory 10% under the real one
    so that slurmd never reports less than configured (which drains the node)."""
    result = subprocess.run(["slurmd", "-C"], capture_output=True, text=True)
    line = next((l for l in result.stdout.splitlines() if l.startswith("NodeName=")), "")
    fields = dict(token.split("=", 1) for token in line.split()[1:] if "=" in token)
    if "CPUs" not in fields or "RealMemory" not in fields:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        fields = {"CPUs": str(os.cpu_count() or 1), "RealMemory": str(pages * page_size // 2**20)}
    fields["RealMemory"] = str(int(int(fields["RealMemory"]) * 0.9))
    return " ".join(f"{key}={value}" for key, value in fields.items())


class SlurmCluster:
    """munged + slurmctld + slurmd on this host, one partition holding the one node.

    `env` is the environment every SLURM client call (and the jobs, through sbatch --export=ALL)
    needs: SLURM_CONF points at this cluster's slurm.conf, where AuthInfo names its munge socket.
    """

    def __init__(self, log_dir: Path | None = None, partition: str = "debug"):
        self.partition = partition
        self.host = socket.gethostname().split(".")[0]
        self.root = Path(tempfile.mkdtemp(prefix="glode-slurm-"))
        # munged wants every directory above its socket searchable by all.
        self.root.chmod(0o755)
        self.log_dir = Path(log_dir) if log_dir else self.root / "log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.jobcomp = self.log_dir / "jobcomp.txt"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for name in [v for v in self.env if v.startswith(("SLURM_JOB", "SBATCH_", "SRUN_", "SQUEUE_"))]:
            del self.env[name]  # a test started inside a SLURM job must not leak that job's settings
        self._write_srun_shim()
        self.processes: dict[str, subprocess.Popen] = {}

    # ---- life cycle ----

    def __enter__(self) -> "SlurmCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 90) -> None:
        self._write_munge_key()
        self._write_conf()
        self._spawn("munged", ["munged", "-F", f"--socket={self.munge_socket}",
                               f"--key-file={self.root / 'munge' / 'munge.key'}",
                               f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                               f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                               f"--log-file={self.log_dir / 'munged.log'}"])
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged to open its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._wait(lambda: "UP" in self.run("scontrol", "ping", check=False).stdout, timeout, "slurmctld to answer")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.host])
        self._wait(self.node_idle, timeout, f"node {self.host} to be idle")

    def stop(self) -> None:
        """Cancel every job, then stop the daemons; never raises, always removes the runtime directory."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            ids = self.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
            if ids:
                self.run("scancel", *ids, check=False)
                self._wait(lambda: not self.run("squeue", "-h", "-t", "R,CG,PD", check=False).stdout.strip(),
                           30, "cancelled jobs to end", raise_on_timeout=False)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for pid in self._stray_step_daemons():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- queries ----

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        result = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")
        return result

    def node_idle(self) -> bool:
        states = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()
        return states == ["idle"]

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still holds (all of them, for MinJobAge after they end)."""
        result = self.run("scontrol", "show", "job", "--oneliner", check=False)
        return parse_records(result.stdout) if result.returncode == 0 else []

    def completions(self) -> list[dict[str, str]]:
        """The job completion file: one record per finished job, written by slurmctld."""
        return parse_records(self.jobcomp.read_text()) if self.jobcomp.exists() else []

    def log_tails(self, chars: int = 3000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # ---- internals ----

    def _write_srun_shim(self) -> None:
        """An `srun` first on the jobs' PATH that puts SLURM_CONF back: the plugin's job step
        (snakemake-executor-plugin-slurm-jobstep) drops every SLURM_* variable but a few job ids
        before it calls srun, which then finds no configuration. Real clusters keep theirs at
        /etc/slurm/slurm.conf (or run configless), which this throwaway cluster must not touch."""
        bin_dir = self.root / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "srun"
        shim.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{shutil.which("srun")}" "$@"\n')
        shim.chmod(0o755)
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"

    def _write_munge_key(self) -> None:
        munge_dir = self.munge_socket.parent
        munge_dir.mkdir(mode=0o755)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)

    def _write_conf(self) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        log = self.log_dir
        self.conf.write_text(
            f"""# Written by tests/slurm_cluster.py: one node, no accounting database.
ClusterName=glodetest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={self.root / 'state'}
SlurmdSpoolDir={self.root / 'spool'}
SlurmctldPidFile={self.root / 'slurmctld.pid'}
SlurmdPidFile={self.root / 'slurmd.pid'}
SlurmctldLogFile={log / 'slurmctld.log'}
SlurmdLogFile={log / 'slurmd.log'}
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
MinJobAge={MIN_JOB_AGE_S}
ReturnToService=2
NodeName={self.host} NodeAddr=127.0.0.1 {node_hardware()} State=UNKNOWN
PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.log_dir / f"{name}.out", "w")
        # Own session: a Ctrl-C meant for pytest does not reach the daemons before stop() does.
        self.processes[name] = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                cwd=self.root, start_new_session=True)
        out.close()

    def _wait(self, ready, timeout: float, what: str, raise_on_timeout: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead and raise_on_timeout:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}\n{self._outputs()}")
            if ready():
                return
            time.sleep(0.5)
        if raise_on_timeout:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{self._outputs()}")

    def _outputs(self) -> str:
        parts = [self.log_tails()]
        for path in sorted(self.log_dir.glob("*.out")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def _stray_step_daemons(self) -> list[int]:
        """slurmstepd processes of this cluster still alive after slurmd stopped (each job step
        daemonises into its own session); they run in slurmd's directory, this cluster's root."""
        strays = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if not (proc / "cmdline").read_bytes().startswith(b"slurmstepd"):
                    continue
                if Path(os.readlink(proc / "cwd")).is_relative_to(self.root):
                    strays.append(int(proc.name))
            except OSError:
                continue
        return strays


if __name__ == "__main__":  # bring a cluster up, show it, take it down: `python tests/slurm_cluster.py`
    reason = ensure_slurm()
    if reason:
        raise SystemExit(reason)
    with SlurmCluster() as cluster:
        print(cluster.run("sinfo").stdout)
        job = cluster.run("sbatch", "--parsable", "-t", "1", "--mem", "100", "-o", "/dev/null",
                          "--wrap", "srun hostname").stdout.strip()
        for _ in range(60):
            record = next(r for r in cluster.jobs() if r["JobId"] == job)
            if record["JobState"] not in ("PENDING", "RUNNING", "COMPLETING"):
                break
            time.sleep(0.5)
        print(record["JobId"], record["JobState"], record["TRES"])
