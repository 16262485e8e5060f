"""A multi-node Ray cluster on one machine (Ray's own test-cluster utility: a head and two
worker nodes, each a separate raylet, all on loopback): A3C's workers land on different nodes
and training completes."""

from __future__ import annotations

import pytest

from critic.algos.a3c import A3C
from critic.runners.ray import loopback_only

import ray  # noqa: E402  (installed by the test extra)
from ray.cluster_utils import Cluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    loopback_only()
    node = dict(include_dashboard=False, node_ip_address="127.0.0.1", object_store_memory=100 * 1024**2)
    c = Cluster(initialize_head=True, head_node_args=dict(node, num_cpus=0))  # the learner's node: no workers
    c.add_node(**node, num_cpus=1)
    c.add_node(**node, num_cpus=1)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def test_a3c_workers_on_two_nodes(cluster):
    agent = A3C("CartPole-v1", workers=2, n_steps=5, hidden_sizes=(16,), backend="ray", address=cluster.address)
    agent.learn(2000, progress_bar=False)
    assert agent.env_steps >= 2000 and agent.env_steps == agent.updates * 5
    nodes = ray.nodes()
    assert len(nodes) == 3 and {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    agent.runner.start(agent.env_steps, agent.env_steps)  # fresh actors, no budget: just placed
    placed = {w.split(":")[0] for w in agent.runner.worker_nodes()}
    head = next(n["NodeID"] for n in nodes if n["Resources"].get("CPU", 0) == 0)
    assert len(placed) == 2 and head not in placed  # one worker per one-CPU node
    agent.close()
