"""Host inventory (``--hosts FILE|LIST``): the real servers a plan's fleet runs on.

One host per line (or per comma-separated item of a LIST)::

    # gpu nodes, rack 3
    10.0.3.11:8000
    10.0.3.12:8000 weight=2
    10.0.3.13:8000 backup
    gpu-b-1.internal:8000 type=l4

``HOST:PORT`` (``[v6]:port`` for IPv6; the one parser is :func:`toolkit.units.parse_hostport`,
which also takes ``HOST:PORT:WEIGHT``), then optional words: ``weight=N`` (nginx weight; default:
the plan's capacity-proportional weight), ``backup`` (only a spare: never an active slot), and
``type=NAME`` (the node type, needed when the plan mixes types). ``#`` starts a comment.

:func:`assign` matches an inventory to a plan's fleet slots (``asrtk plan --hosts`` and
``asrtk generate --hosts`` both go through it, so they agree). Pure: text in, values out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolkit.errors import ConfigError, UsageError
from toolkit.units import parse_hostport

LINE_FORM = "HOST:PORT [weight=N] [backup] [type=NAME]"


@dataclass(frozen=True)
class Host:
    address: str
    weight: int | None = None  # None: the plan's weight
    backup: bool = False
    node_type: str | None = None
    ref: str = ""  # "hosts.txt line 3", for messages and the generated comments


def parse_hosts(text: str, source: str, *, is_list: bool = False) -> tuple[Host, ...]:
    """Parse an inventory file's text (``is_list``: a comma-separated ``--hosts`` value)."""
    items = text.split(",") if is_list else text.splitlines()
    hosts: list[Host] = []
    seen: dict[str, str] = {}
    for n, raw in enumerate(items, start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        ref = f"{source} item {n}" if is_list else f"{source} line {n}"
        try:
            hp = parse_hostport(words[0], f"--hosts {ref}:")
        except UsageError as exc:
            raise ConfigError(f"{exc}; a host is {LINE_FORM}") from None
        weight, backup, node_type = hp.weight, False, None
        for w in words[1:]:
            key, _, value = w.partition("=")
            if w == "backup":
                backup = True
            elif key == "weight" and value.isdigit() and int(value) >= 1 and hp.weight is None:
                weight = int(value)
            elif key == "type" and value:
                node_type = value
            else:
                raise ConfigError(f"--hosts {ref}: cannot read {w!r}; a host is {LINE_FORM} "
                                  "(weight an integer >= 1, given once)")
        if hp.address in seen:
            raise ConfigError(f"--hosts {ref}: {hp.address} is already on {seen[hp.address]}; list each host once")
        seen[hp.address] = ref
        hosts.append(Host(hp.address, weight, backup, node_type, ref))
    if not hosts:
        raise ConfigError(f"--hosts {source}: no hosts; give one {LINE_FORM} per line")
    return tuple(hosts)


def fleet_from_hosts(hosts: Sequence[Host]) -> list[dict[str, Any]]:
    """A fleet made of the inventory alone (no plan to match): weights 1 unless given."""
    return [_entry(h, h.node_type or "", h.weight or 1, h.backup) for h in hosts]


def _entry(h: Host, node_type: str, weight: int, backup: bool) -> dict[str, Any]:
    return {"name": h.address, "node_type": node_type, "address": h.address, "weight": weight,
            "backup": backup, "source": h.ref + ("" if h.weight is None else ", weight from there")}


def assign(slots: Sequence[Mapping[str, Any]], hosts: Sequence[Host], source: str) -> tuple[list[dict], list[str]]:
    """Put the inventory's hosts into the plan's fleet slots (``{node_type, weight, backup}``).

    Per node type, hosts not marked ``backup`` fill the active slots in inventory order; the
    backup slots take the hosts marked ``backup`` first, then the remaining unmarked ones. Too few
    hosts is an error that says how many are missing; hosts beyond the plan are left out and named
    in the returned notes. Weights: the inventory's where given, else the slot's (the plan's).
    """
    types = list(dict.fromkeys(str(s.get("node_type") or "") for s in slots))
    for h in hosts:
        if h.node_type is not None and h.node_type not in types:
            raise ConfigError(f"--hosts {h.ref}: type={h.node_type} is not a node type of the plan "
                              f"({', '.join(t for t in types if t) or 'none named'})")
    if len(types) > 1 and any(h.node_type is None for h in hosts):
        raise ConfigError(f"--hosts {source}: the plan mixes node types {', '.join(types)}; "
                          "mark each host with type=NAME")
    fleet: list[dict] = []
    missing: list[str] = []
    used: set[str] = set()
    for t in types:
        mine = [h for h in hosts if h.node_type in (t, None)]
        want_active = [s for s in slots if str(s.get("node_type") or "") == t and not s.get("backup")]
        want_backup = [s for s in slots if str(s.get("node_type") or "") == t and s.get("backup")]
        unmarked = [h for h in mine if not h.backup]
        spare = [h for h in mine if h.backup] + unmarked[len(want_active):]
        for slot, h in zip(want_active, unmarked):
            fleet.append(_entry(h, t, h.weight or int(slot.get("weight") or 1), False))
        for slot, h in zip(want_backup, spare):
            fleet.append(_entry(h, t, h.weight or int(slot.get("weight") or 1), True))
        used |= {f["address"] for f in fleet}
        short_a = max(0, len(want_active) - len(unmarked))
        short_b = max(0, len(want_backup) - len(spare))
        if short_a or short_b:
            what = " and ".join(x for x in (short_a and f"{short_a} active", short_b and f"{short_b} backup") if x)
            missing.append(f"{short_a + short_b} missing ({what}" + (f" of type {t}" if t and len(types) > 1 else "")
                           + ")")
    if missing:
        need_a = sum(1 for s in slots if not s.get("backup"))
        marked = sum(1 for h in hosts if h.backup)
        raise ConfigError(
            f"--hosts {source}: {len(hosts)} host(s) given" + (f" ({marked} marked backup)" if marked else "")
            + f", the plan needs {len(slots)} ({need_a} active + {len(slots) - need_a} backup): "
            + "; ".join(missing) + "; add hosts (only unmarked hosts take active slots) or plan for fewer nodes "
            "(--target-qps, --redundancy)"
        )
    notes = []
    left = [h.address for h in hosts if h.address not in used]
    if left:
        notes.append(f"--hosts {source}: {len(left)} host(s) beyond the plan's {len(slots)} nodes left out: "
                     + ", ".join(left))
    return fleet, notes
