"""`deploy/local/platform stop --purge`: an isolated instance whose PostgreSQL cluster lives
outside its directory (/var/tmp/portal-pg-<hash>, when user postgres cannot reach the
directory) leaves nothing behind; a plain `stop` keeps the cluster for the next start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "deploy" / "local" / "platform"
UNUSED_PORT_BASE = "29900"  # nothing runs there: stop has nothing to stop


def _stop(instance: Path, *options: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env |= {"PORTAL_PLATFORM_DIR": str(instance), "PORTAL_PLATFORM_PORT_BASE": UNUSED_PORT_BASE}
    subprocess.run(
        [str(LAUNCHER), "stop", *options], env=env, check=True, capture_output=True, timeout=120
    )


def _instance_with_cluster_elsewhere(tmp_path: Path) -> tuple[Path, Path]:
    instance, cluster = tmp_path / "instance", tmp_path / "portal-pg-elsewhere"
    instance.mkdir()
    (cluster / "data").mkdir(parents=True)
    (instance / "postgres.location").write_text(f"{cluster}\n")
    return instance, cluster


def test_stop_purge_deletes_a_cluster_kept_outside_the_instance(tmp_path: Path) -> None:
    instance, cluster = _instance_with_cluster_elsewhere(tmp_path)

    _stop(instance, "--purge")

    assert not cluster.exists()
    assert not (instance / "postgres.location").exists()


def test_plain_stop_keeps_the_cluster_for_the_next_start(tmp_path: Path) -> None:
    instance, cluster = _instance_with_cluster_elsewhere(tmp_path)

    _stop(instance)

    assert (cluster / "data").is_dir()
    assert (instance / "postgres.location").read_text().strip() == str(cluster)
