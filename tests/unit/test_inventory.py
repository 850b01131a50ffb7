"""Host inventory (--hosts): parsing, matching to a plan's fleet slots, and the errors that say what is missing."""

from __future__ import annotations

import pytest

from toolkit.capacity.inventory import Host, assign, parse_hosts
from toolkit.errors import ConfigError


def slots(active: int, backup: int, node_type: str = "gpu-a", weight: int = 39) -> list[dict]:
    return [{"name": f"{node_type}-{i + 1}", "node_type": node_type, "weight": weight, "backup": i >= active}
            for i in range(active + backup)]


def test_file_lines_take_weight_backup_type_and_comments() -> None:
    hosts = parse_hosts("# rack 3\n\n10.0.0.1:8000\n10.0.0.2:8000 weight=2  # the big one\n"
                        "[::1]:9000 backup\ngpu-b:8000:3 type=l4\n", "hosts.txt")
    assert hosts == (
        Host("10.0.0.1:8000", None, False, None, "hosts.txt line 3"),
        Host("10.0.0.2:8000", 2, False, None, "hosts.txt line 4"),
        Host("[::1]:9000", None, True, None, "hosts.txt line 5"),
        Host("gpu-b:8000", 3, False, "l4", "hosts.txt line 6"),
    )
    assert [h.ref for h in parse_hosts("a:1, b:2 backup", "list", is_list=True)] == ["list item 1", "list item 2"]


@pytest.mark.parametrize("text, message", [
    ("a:1\nnoport\n", r"--hosts hosts.txt line 2: 'noport' is not HOST:PORT"),
    ("a:1 spare\n", r"line 1: cannot read 'spare'"),
    ("a:1:2 weight=3\n", r"line 1: cannot read 'weight=3'"),
    ("a:1 weight=0\n", r"cannot read 'weight=0'"),
    ("a:1\nb:2\na:1 backup\n", r"line 3: a:1 is already on hosts.txt line 1"),
    ("# nothing\n", "no hosts"),
])
def test_bad_inventories_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_hosts(text, "hosts.txt")
    assert "\n" not in str(info.value)


def test_hosts_fill_active_then_backup_slots_and_extra_hosts_are_named() -> None:
    hosts = parse_hosts("h1:8000\nh2:8000 weight=5\nh9:8000 backup\nh3:8000\nh4:8000\n", "hosts.txt")
    fleet, notes = assign(slots(2, 1), hosts, "hosts.txt")
    assert [(f["address"], f["weight"], f["backup"]) for f in fleet] == [
        ("h1:8000", 39, False), ("h2:8000", 5, False), ("h9:8000", 39, True)]
    assert fleet[1]["source"] == "hosts.txt line 2, weight from there"
    assert notes == ["--hosts hosts.txt: 2 host(s) beyond the plan's 3 nodes left out: h3:8000, h4:8000"]
    # unmarked hosts beyond the active slots become the backups when none is marked
    fleet, _ = assign(slots(1, 1), parse_hosts("h1:1\nh2:1\n", "x"), "x")
    assert [f["backup"] for f in fleet] == [False, True]


def test_too_few_hosts_says_how_many_are_missing() -> None:
    with pytest.raises(ConfigError) as info:
        assign(slots(4, 1), parse_hosts("h1:1\nh2:1\n", "hosts.txt"), "hosts.txt")
    assert str(info.value) == (
        "--hosts hosts.txt: 2 host(s) given, the plan needs 5 (4 active + 1 backup): 3 missing (2 active and 1 backup); "
        "add hosts (only unmarked hosts take active slots) or plan for fewer nodes (--target-qps, --redundancy)")
    # hosts marked backup never take an active slot
    with pytest.raises(ConfigError, match=r"x: 3 host\(s\) given \(2 marked backup\).*1 missing \(1 active\)"):
        assign(slots(2, 1), parse_hosts("h1:1\nh2:1 backup\nh3:1 backup\n", "x"), "x")


def test_mixed_plans_need_typed_hosts() -> None:
    mixed = slots(1, 0, "a100", 55) + slots(2, 1, "l4", 20)
    with pytest.raises(ConfigError, match="mixes node types a100, l4; mark each host with type=NAME"):
        assign(mixed, parse_hosts("h1:1\nh2:1\nh3:1\nh4:1\n", "x"), "x")
    with pytest.raises(ConfigError, match="x line 1: type=t4 is not a node type of the plan"):
        assign(mixed, parse_hosts("h1:1 type=t4\n", "x"), "x")
    fleet, _ = assign(mixed, parse_hosts("l1:1 type=l4\na1:1 type=a100\nl2:1 type=l4\nl3:1 type=l4\n", "x"), "x")
    assert [(f["address"], f["node_type"], f["weight"], f["backup"]) for f in fleet] == [
        ("a1:1", "a100", 55, False), ("l1:1", "l4", 20, False), ("l2:1", "l4", 20, False), ("l3:1", "l4", 20, True)]
    with pytest.raises(ConfigError, match=r"1 missing \(1 backup of type l4\)"):
        assign(mixed, parse_hosts("l1:1 type=l4\na1:1 type=a100\nl2:1 type=l4\n", "x"), "x")
