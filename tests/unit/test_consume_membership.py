"""Static membership slots: stable across restarts, distinct side by side, released when the holder dies."""

import subprocess
import sys

from k2cli.consume.membership import claim_instance_id


def test_two_live_claims_get_different_ids_and_a_release_gives_the_slot_back(tmp_path):
    a = claim_instance_id("g", "localhost:9092", directory=tmp_path, hostname="host")
    b = claim_instance_id("g", "localhost:9092", directory=tmp_path, hostname="host")
    assert (a.instance_id, b.instance_id) == ("g-host-0", "g-host-1")
    a.close()
    c = claim_instance_id("g", "localhost:9092", directory=tmp_path, hostname="host")
    assert c.instance_id == "g-host-0"
    b.close()
    c.close()


def test_groups_and_clusters_have_their_own_slots(tmp_path):
    a = claim_instance_id("g1", "localhost:9092", directory=tmp_path, hostname="h")
    b = claim_instance_id("g2", "localhost:9092", directory=tmp_path, hostname="h")
    c = claim_instance_id("g1", "other:9092", directory=tmp_path, hostname="h")
    assert [x.instance_id for x in (a, b, c)] == ["g1-h-0", "g2-h-0", "g1-h-0"]


def test_explicit_id_wins(tmp_path):
    assert claim_instance_id("g", "x:1", explicit="mine", directory=tmp_path).instance_id == "mine"


def test_a_killed_holder_releases_its_slot(tmp_path):
    code = ("import sys, time; sys.path.insert(0, '.');"
            "from k2cli.consume.membership import claim_instance_id;"
            f"c = claim_instance_id('g', 'x:1', directory=__import__('pathlib').Path({str(tmp_path)!r}), hostname='h');"
            "print(c.instance_id, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "g-h-0"
    assert claim_instance_id("g", "x:1", directory=tmp_path, hostname="h").instance_id == "g-h-1"
    proc.kill()
    proc.wait()
    assert claim_instance_id("g", "x:1", directory=tmp_path, hostname="h").instance_id == "g-h-0"
