"""The test cluster listens on loopback only: no Ray process of it binds another address."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.ray.conftest import RayHead

pytestmark = pytest.mark.ray

LOOPBACK = ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]")


def _group_pids(pgid: int) -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.add(int(entry))
            except ProcessLookupError:
                continue
    return pids


def test_every_listener_of_the_cluster_is_on_loopback(ray_head: RayHead) -> None:
    ss = shutil.which("ss")
    if ss is None:
        pytest.fail("the loopback check needs ss (apt-get install iproute2)")
    pids = _group_pids(ray_head.pgid)
    assert pids, "the cluster's processes were not found"
    listing = subprocess.run([ss, "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ours = []
    for line in listing.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            local = line.split()[3]
            ours.append(local)
            assert local.startswith(LOOPBACK), f"a Ray process listens on {local}: {line}"
    assert ours, "no listener of the cluster was seen (ss shows none of its pids)"
