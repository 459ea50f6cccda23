"""The same ingest on an embedded local Ray and on a two-node Ray cluster (one host, 127.0.0.1) gives the
same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from conftest import file_digests
from wamdata.ingest import ingest

NODE_ARGS = {"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}


@pytest.mark.timeout(300)
def test_two_node_cluster_writes_the_same_bytes_as_a_local_run(real_data: Path, tmp_path: Path) -> None:
    root = real_data / "lerobot_gr00t_picknplace" / "robot_sim.PickNPlace"
    assert not ray.is_initialized()
    with pytest.warns(UserWarning):
        ingest("lerobot", str(root), tmp_path / "local", progress=False)
    assert not ray.is_initialized()  # the embedded Ray was started and stopped by the ingest
    cluster = Cluster(initialize_head=True, head_node_args=NODE_ARGS)
    try:
        cluster.add_node(**NODE_ARGS)
        cluster.wait_for_nodes(timeout=60)
        assert len(cluster.list_all_nodes()) == 2
        with pytest.warns(UserWarning):
            ingest("lerobot", str(root), tmp_path / "cluster", address=cluster.address, progress=False)
    finally:
        cluster.shutdown()
    assert file_digests(tmp_path / "cluster") == file_digests(tmp_path / "local")
